"""Test doubles for the services Phoney talks to (local servers speaking their wire protocols)."""
