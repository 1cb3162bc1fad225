"""Tests of the keyvault's pure cryptographic core."""
