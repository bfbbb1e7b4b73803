"""chatbot_app: a pure-Python, reactive LLM chat app."""
