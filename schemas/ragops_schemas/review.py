"""Human review (schema version 1): people label sampled answers, and the labels measure and
calibrate the automatic evaluators.

A reviewer (role ``reviewer``) takes an answer from the review queue (sampled at random, among
the lowest-scoring, or among those with negative feedback: ``sampled_as``) and says whether it
is correct and whether it is grounded in its retrieved context, with an optional correction
and comment. The gateway publishes :class:`ReviewSubmitted` on an intake topic (the correction
and comment are a person's free text: they may hold personal data); the privacy service
redacts them and publishes :class:`AnswerReviewed`, which the sink keeps (the ``reviews``
table) and the feedback service turns into a dataset example (``source="review"``).

Agreement of each automatic metric with the labels (Spearman's rho, and Cohen's kappa at the
calibrated threshold) is computed by :mod:`ragops_analytics.agreement`.
"""

from typing import Literal

from pydantic import Field

from ragops_schemas.envelope import RequestEvent
from ragops_schemas.topics import Topic

SampledAs = Literal["random", "low_score", "negative_feedback"]
"""Why the answer was in the review queue: a uniform sample, one of the lowest-scoring answers,
or an answer a user gave a thumbs-down or a rating of 2 or less. Agreement is computed over
the ``random`` stratum as well as over all labels, since the other two are not representative."""


class ReviewContent(RequestEvent):
    """The fields of a review as its reviewer gave it (``request_id`` of the answer): shared by
    :class:`ReviewSubmitted` (raw, on the intake topic) and :class:`AnswerReviewed`."""

    # Declared here so each subclass's Literal keeps its place in the JSON, after the key.
    event_type: str
    answer_event_id: str = Field(min_length=1, max_length=64, description="The AnswerGenerated reviewed.")
    reviewer: str = Field(
        min_length=1, max_length=256, description="Who labelled it: the gateway's actor (key:<id> or person:<sub>)."
    )
    correct: bool = Field(description="The answer answers the question correctly.")
    grounded: bool = Field(description="Every claim of the answer is supported by its retrieved context.")
    sampled_as: SampledAs
    corrected_answer: str | None = Field(default=None, min_length=1, max_length=4000)
    comment: str | None = Field(default=None, max_length=4000)
    asker_key_id: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{32}$",
        description="The sealing key id (ids.subject_key_id) of whoever asked the question, set by the gateway "
        "from the request's user_id; the dataset example the review makes is sealed with it, so erasing the "
        "asker erases it. None: the question came without a user_id.",
    )


class ReviewSubmitted(ReviewContent):
    """A reviewer labelled an answer, raw: on the intake topic, read only by the privacy
    service, which publishes its :class:`AnswerReviewed`."""

    TOPIC = Topic.REVIEW_SUBMITTED
    event_type: Literal["review.submitted"] = "review.submitted"


class AnswerReviewed(ReviewContent):
    """A reviewer's label of an answer, its free text redacted. Its id is derived from the
    submission's, ``occurred_at`` is the submission's. A later review of the same answer by the
    same reviewer replaces the earlier one (the latest counts)."""

    TOPIC = Topic.ANSWER_REVIEWED
    event_type: Literal["review.answer_reviewed"] = "review.answer_reviewed"
    redactions: dict[str, int] = Field(
        default_factory=dict, description="Entities replaced in the correction and comment, by type (counts only)."
    )


REVIEW_EVENT_TYPES: tuple[type[RequestEvent], ...] = (ReviewSubmitted, AnswerReviewed)

__all__ = ["REVIEW_EVENT_TYPES", "AnswerReviewed", "ReviewContent", "ReviewSubmitted", "SampledAs"]
