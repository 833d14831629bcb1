"""The Open Payments authorization server (GNAP): grants, access tokens, continuation."""
