"""Use cases: plain async functions over a typed Context. No GraphQL types, no HTTP."""
