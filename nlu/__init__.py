"""Understanding and answering: the LLM, intents and slots, replies."""
