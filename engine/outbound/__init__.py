"""Outbound calls: placing calls through Twilio's REST API (`dial`), what a placed call
carries into its flow (`records`), and paced, resumable campaigns of them (`campaign`)."""
