"""Speech to text: audio input, Whisper backends, transcripts."""
