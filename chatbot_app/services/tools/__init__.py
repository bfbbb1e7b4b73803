"""Tools a model can call while it writes a reply: built-ins, Groq's own, and MCP servers'."""
