"""OpenAI-compatible function-calling server for Hammer models."""
