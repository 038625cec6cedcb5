"""Speech: OpenAI text-to-speech, the shared audio cache, warm-up of static prompts, voices."""

from engine.speech.cache import AudioCache, audio_key
from engine.speech.tts import SpeechFailed, Synthesizer
from engine.speech.voices import SpeechVoicing, TwilioVoicing

__all__ = ["AudioCache", "SpeechFailed", "SpeechVoicing", "Synthesizer", "TwilioVoicing",
           "audio_key"]
