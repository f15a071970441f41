"""The seeds' scenarios as shipped workflows: services, messages and definitions."""
