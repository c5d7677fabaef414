"""The teacher: any OpenAI-compatible endpoint, through the official `openai` client."""
