"""Phoney: a configuration-driven call flow engine for Twilio voice calls."""
