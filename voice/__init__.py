"""The call: audio in and out, voice activity, turn taking, speech synthesis."""
