"""The pure call interpreter: call state, `step`, conditions and templates. No I/O here."""
