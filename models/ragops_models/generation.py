"""What every generation backend returns and offers (torch-free): :class:`Generation` and the
:class:`Generator` interface that :class:`~ragops_models.transformers_generator.TransformersGenerator`
and :class:`~ragops_models.openai_generator.OpenAICompatibleGenerator` implement."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Generation:
    """The model's answer to one request.

    ``finish_reason`` uses OpenTelemetry's ``gen_ai.response.finish_reasons`` values:
    ``"stop"`` when the model emitted an end-of-sequence token or a stop sequence (which is
    not part of ``text``), ``"length"`` when it ran into ``max_new_tokens``. ``text`` is
    stripped and may be ``""`` (a base model that starts its completion with the stop
    newline): the caller treats an empty text as no answer.
    """

    text: str
    input_tokens: int
    """Prompt tokens of this request after the chat template, padding excluded."""
    output_tokens: int
    """Generated tokens of this request, the end-of-sequence token included, padding excluded."""
    finish_reason: str


class Generator(Protocol):
    """A generation backend; its methods block (call them from a worker thread)."""

    model_name: str
    """The model's name for ``gen_ai.request.model``."""

    @property
    def model_version(self) -> str:
        """Stable id of the weights that answer (``gen_ai`` model version in events)."""
        ...

    def warm_up(self) -> None:
        """Load the model or connect to the server, once."""
        ...

    def generate(self, batch: Sequence[list[dict[str, str]]]) -> list[Generation]:
        """One :class:`Generation` per chat request (a list of ``{"role", "content"}``
        messages), in order."""
        ...
