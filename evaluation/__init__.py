"""``hammer eval``: function-calling quality of any OpenAI-compatible endpoint, by BFCL's rules."""
