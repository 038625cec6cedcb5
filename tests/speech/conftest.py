"""The speech suite shares the AI suite's fixtures: the app wired to the OpenAI double."""

from tests.ai.conftest import (
    app,
    app_config,
    background_work_ends_before_the_store_closes,
    double,
    phone,
)

__all__ = ["app", "app_config", "background_work_ends_before_the_store_closes", "double",
           "phone"]
