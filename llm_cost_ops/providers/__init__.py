"""Usage records from LLM provider responses, and sending them from a service.

Reading order: ``shape`` (recognising OpenAI, Anthropic, Gemini and Bedrock responses),
``extract`` (one response to one usage record, and the token mapping), ``stream`` (the same
for streamed responses), ``track`` (sending records without breaking the caller's call),
``transport`` (automatic tracking of every call an httpx-based SDK makes).
"""

from llm_cost_ops.providers.errors import UsageMissingError
from llm_cost_ops.providers.extract import usage_from_response
from llm_cost_ops.providers.stream import StreamAccumulator, usage_from_async_stream, usage_from_stream
from llm_cost_ops.providers.track import Sender, Tracker, track, tracked
from llm_cost_ops.providers.transport import AsyncTrackingTransport, TrackingTransport

__all__ = [
    "AsyncTrackingTransport",
    "Sender",
    "StreamAccumulator",
    "Tracker",
    "TrackingTransport",
    "UsageMissingError",
    "track",
    "tracked",
    "usage_from_async_stream",
    "usage_from_response",
    "usage_from_stream",
]
