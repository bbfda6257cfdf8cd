"""The fold of ledger entries into roll-up items (DESIGN.md "Analytics roll-ups").

Fed by the table's stream (functions/analytics): every new ledger entry, once. A stream may deliver
a record twice (a retried batch) and in any order across partitions, so each entry is counted in ONE
transaction together with a marker item `RUSEEN#{source}#{entry id}` written under
`attribute_not_exists`: a replay fails the marker's condition and changes nothing. Counters are
blind ADDs, so the order of entries never matters.

Two kinds of entries are folded:
- wallet entries (`WALLET#...`/`ENTRY#...`): requests, tokens, revenue, provider cost (charges),
  deposits, trial credits, refunds, adjustments. A default-mode wallet names its paywall, environment
  and user; a person's wallet (shared mode) names the paywall only on a charge's metadata (top-ups of
  a person's wallet belong to no paywall and are not folded).
- earnings entries of shared-mode paywalls (`EARN#...`/`ENTRY#...`, type charge): the platform fee
  and the app user's spend (a person's wallet entry does not name the app user).

Items (all in the one table):
- `RU#{paywall}#{env}#{shard:02d}` / `D#{day}#` (day), `H#{day}T{hh}` (hour, expires after
  HOUR_RETENTION_DAYS), `D#{day}#M#{model}` (day x model): the measures below. shard = crc32(entry id)
  mod SHARDS, so a paywall's entries spread evenly (see DESIGN.md "Hot keys" for the arithmetic).
- `RUUSER#{paywall}#{env}#{user}` / `TOTAL` and `D#{day}`: the user's spend and requests.
- `RUTOP#{paywall}#{env}#{day}` / `S#{shard:02d}`: the day's TOP_USERS biggest spenders of the users
  hashed to that shard (a bounded leaderboard, see `_raise_board`).
"""

from __future__ import annotations

import contextlib
import logging
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from paywalls.infra import store
from paywalls.infra.store import N, TransactionCancelled

log = logging.getLogger(__name__)

SHARDS = 64
BOARD_SHARDS = 32
TOP_USERS = 10
HOUR_RETENTION_DAYS = 8
BOARD_RETENTION_DAYS = 800
SEEN_TTL_S = 7 * 86400  # longer than a stream keeps a record (24 h): a replay is always caught
MEASURES = (
    "requests",
    "tokens_in",
    "tokens_out",
    "revenue",
    "provider_cost",
    "fees",
    "deposits",
    "trials",
    "refunds",
    "adjustments",
)
MANUAL_MODEL = "(manual)"  # a charge without a model: /v1/user/charge
NO_PROVIDER = "(none)"  # a charge no provider served (a manual charge, a legacy entry)


@dataclass(frozen=True)
class Fact:
    """What one ledger entry adds to the roll-ups."""

    source: str  # "w" wallet entry, "e" earnings entry: their ids are shared, their markers are not
    entry_id: str
    paywall_id: str
    environment: str
    created_at: str  # ISO, UTC ("...Z")
    measures: Mapping[str, int]
    model: str | None = None  # charges only: the day x model item
    provider: str | None = None  # charges only: the day x provider item (profit per provider)
    user: str | None = None  # whose spend this is (None: not attributable here)
    spend: int = 0
    user_requests: int = 0

    @property
    def day(self) -> str:
        return self.created_at[:10]

    @property
    def hour(self) -> str:
        return self.created_at[11:13]

    @property
    def shard(self) -> int:
        return zlib.crc32(self.entry_id.encode()) % SHARDS


def is_ledger_item(item: Mapping[str, Any]) -> bool:
    pk, sk = str(item.get("pk", "")), str(item.get("sk", ""))
    return sk.startswith("ENTRY#") and (pk.startswith("WALLET#") or pk.startswith("EARN#"))


def fact_of(item: Mapping[str, Any]) -> Fact | None:
    """The roll-up contribution of a ledger item (decoded), or None when it adds nothing."""
    if not is_ledger_item(item):
        return None
    if str(item["pk"]).startswith("EARN#"):
        return _earnings_fact(item)
    return _wallet_fact(item)


def _wallet_fact(item: Mapping[str, Any]) -> Fact | None:
    wallet_id = str(item["pk"]).removeprefix("WALLET#")
    metadata = item.get("metadata") or {}
    if wallet_id.startswith("person:"):
        # Shared mode: only an app's charge names its paywall; the user's spend comes from the
        # paywall's earnings entry (below), which names the app user.
        paywall_id, environment, user = metadata.get("paywall_id"), metadata.get("environment"), None
    else:
        parts = wallet_id.split(":", 2)
        if len(parts) != 3:
            return None
        paywall_id, environment, user = parts
    if not paywall_id or environment not in ("live", "test"):
        return None
    amount = int(item["amount"])
    kind = item["type"]
    measures: dict[str, int] = {}
    model = provider = None
    spend = 0
    if kind == "charge":
        measures = {
            "requests": 1,
            "revenue": -amount,
            "provider_cost": int(item.get("provider_cost") or 0),
            "tokens_in": int(item.get("prompt_tokens") or 0),
            "tokens_out": int(item.get("completion_tokens") or 0),
        }
        model = item.get("model") or MANUAL_MODEL
        provider = item.get("provider") or NO_PROVIDER
        spend = -amount
    elif kind == "deposit":
        measures = {"deposits": amount}
    elif kind == "trial":
        measures = {"trials": amount}
    elif kind == "refund":
        measures = {"refunds": -amount}
    elif kind == "adjustment":
        measures = {"adjustments": amount}
    else:
        return None
    return Fact(
        "w",
        str(item["entry_id"]),
        str(paywall_id),
        str(environment),
        str(item["created_at"]),
        {k: v for k, v in measures.items() if v},
        model=model,
        provider=provider,
        user=user if spend else None,
        spend=spend if user else 0,
        user_requests=1 if (user and kind == "charge") else 0,
    )


def _earnings_fact(item: Mapping[str, Any]) -> Fact | None:
    if item.get("type") != "charge":
        return None  # withdrawals and reversals move earnings, not usage
    _, paywall_id, environment, _shard = str(item["pk"]).split("#", 3)
    gross = int(item.get("gross") or 0)
    return Fact(
        "e",
        str(item["entry_id"]),
        paywall_id,
        environment,
        str(item["created_at"]),
        {"fees": int(item.get("fee") or 0)},
        user=item.get("user"),
        spend=gross,
        user_requests=1,
    )


# ---- keys ---------------------------------------------------------------------------------------


def shard_pk(paywall_id: str, environment: str, shard: int) -> str:
    return f"RU#{paywall_id}#{environment}#{shard:02d}"


def user_pk(paywall_id: str, environment: str, user: str) -> str:
    return f"RUUSER#{paywall_id}#{environment}#{user}"


def board_pk(paywall_id: str, environment: str, day: str) -> str:
    return f"RUTOP#{paywall_id}#{environment}#{day}"


def board_shard(user: str) -> int:
    return zlib.crc32(user.encode()) % BOARD_SHARDS


def day_sk(day: str) -> str:
    return f"D#{day}#"


def hour_sk(day: str, hour: str) -> str:
    # Apart from the `D#` items: a report of many days never reads 24 hour items per day.
    return f"H#{day}T{hour}"


def model_sk(day: str, model: str) -> str:
    return f"D#{day}#M#{model}"


PROVIDER_MEASURES = ("requests", "revenue", "provider_cost")


def provider_attribute(provider: str, measure: str) -> str:
    """Per-provider measures ride on the day item as attributes (`p#{provider}#{measure}`), not as an
    item of their own: a charge still writes 3 items of its shard (DESIGN "Hot keys"), and a day
    item gains one attribute per provider and measure."""
    return f"p#{provider}#{measure}"


def provider_measures(fact: Fact) -> dict[str, int]:
    if not fact.provider:
        return {}
    return {provider_attribute(fact.provider, m): fact.measures[m] for m in PROVIDER_MEASURES if fact.measures.get(m)}


# ---- the fold -----------------------------------------------------------------------------------


def _add(pk: str, sk: str, measures: Mapping[str, int], *, ttl: int | None = None) -> dict[str, Any]:
    names = {f"#m{i}": name for i, name in enumerate(measures)}
    values: dict[str, Any] = {f":m{i}": N(v) for i, v in enumerate(measures.values())}
    update = "ADD " + ", ".join(f"#m{i} :m{i}" for i in range(len(measures)))
    if ttl is not None:
        update += " SET expires_at_ttl = if_not_exists(expires_at_ttl, :ttl)"
        values[":ttl"] = N(ttl)
    return {
        "Update": {
            "TableName": store.table_name(),
            "Key": store.key(pk, sk),
            "UpdateExpression": update,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


def _hour_expiry(fact: Fact) -> int:
    start = datetime.fromisoformat(fact.created_at[:13] + ":00:00+00:00")
    return int(start.timestamp()) + HOUR_RETENTION_DAYS * 86400


def _board_expiry(fact: Fact) -> int:
    # Reports look back at most MAX_DAYS (reports.py); a board older than that is never read.
    return int(datetime.fromisoformat(fact.day + "T00:00:00+00:00").timestamp()) + BOARD_RETENTION_DAYS * 86400


def transaction_items(fact: Fact, *, now: int | None = None) -> list[dict[str, Any]]:
    """The marker and every counter of one fact: written together or not at all."""
    now = int(time.time()) if now is None else now
    items: list[dict[str, Any]] = [
        {
            "Put": {
                "TableName": store.table_name(),
                "Item": store.encode(
                    {
                        "pk": f"RUSEEN#{fact.source}#{fact.entry_id}",
                        "sk": "SEEN",
                        "expires_at_ttl": now + SEEN_TTL_S,
                    }
                ),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
    ]
    pk = shard_pk(fact.paywall_id, fact.environment, fact.shard)
    if fact.measures:
        items.append(_add(pk, day_sk(fact.day), {**fact.measures, **provider_measures(fact)}))
        items.append(_add(pk, hour_sk(fact.day, fact.hour), fact.measures, ttl=_hour_expiry(fact)))
        if fact.model:
            items.append(_add(pk, model_sk(fact.day, fact.model), fact.measures))
    if fact.user and (fact.spend or fact.user_requests):
        upk = user_pk(fact.paywall_id, fact.environment, fact.user)
        spent = {"spend": fact.spend, "requests": fact.user_requests}
        items.append(_add(upk, "TOTAL", spent))
        items.append(_add(upk, f"D#{fact.day}", spent))
    return items


def fold(fact: Fact) -> bool:
    """Count one fact exactly once. False when it had been counted before (a replayed record)."""
    items = transaction_items(fact)
    if len(items) == 1:
        return False  # nothing to count
    try:
        store.transact(items, token_seed=f"rollup|{fact.source}|{fact.entry_id}")
    except TransactionCancelled as cancelled:
        if cancelled.codes and cancelled.codes[0] == store.CONDITION_FAILED:
            # Counted before; what follows the transaction may not have happened (a crash in
            # between): both steps are monotonic, so doing them again is harmless.
            _after(fact)
            return False
        raise
    _after(fact)
    return True


def _after(fact: Fact) -> None:
    """The monotonic updates outside the transaction: the user's last activity and the top board."""
    if not fact.user:
        return
    with contextlib.suppress(store.ConditionFailed):  # a later activity is recorded: last_at only rises
        store.update(
            user_pk(fact.paywall_id, fact.environment, fact.user or ""),
            "TOTAL",
            "SET last_at = :at",
            condition="attribute_not_exists(last_at) OR last_at < :at",
            values={":at": {"S": fact.created_at}},
        )
    _raise_board(fact)


def fold_items(items: Iterable[Mapping[str, Any]]) -> int:
    """Fold decoded ledger items; returns how many were counted for the first time."""
    return sum(fold(fact) for fact in map(fact_of, items) if fact is not None)


# ---- top users: a bounded leaderboard per day and user shard -----------------------------------


BOARD_ATTEMPTS = 20


def _raise_board(fact: Fact) -> None:
    """Put the user's spend of the day (read back, so it includes this fact) on the day's board of
    their shard if it is among its TOP_USERS. A board keeps TOP_USERS users: exact per day (each user
    is on one shard; the top users of the day are among the union of the shards' boards). Monotonic:
    a user's value only ever rises to their real total, so replays and reorderings are harmless;
    concurrent writers meet on the board's `version` condition and re-read."""
    if not fact.user or not fact.spend:
        return
    today = store.get(user_pk(fact.paywall_id, fact.environment, fact.user), f"D#{fact.day}")
    spent = int((today or {}).get("spend", 0))
    pk, sk = board_pk(fact.paywall_id, fact.environment, fact.day), f"S#{board_shard(fact.user):02d}"
    for attempt in range(BOARD_ATTEMPTS):
        board = store.get(pk, sk) or {}
        top: dict[str, int] = {u: int(v) for u, v in (board.get("top") or {}).items()}
        if top.get(fact.user, -1) >= spent:
            return
        top[fact.user] = spent
        if len(top) > TOP_USERS:
            smallest = min(top, key=lambda u: (top[u], u))
            if smallest == fact.user:
                return  # not among the top
            del top[smallest]
        version = int(board.get("version", 0))
        item = {"pk": pk, "sk": sk, "top": top, "version": version + 1, "expires_at_ttl": _board_expiry(fact)}
        try:
            store.put(
                item,
                condition="attribute_not_exists(pk) OR version = :v",
                values={":v": N(version)},
            )
            return
        except store.ConditionFailed:
            store.backoff(min(attempt, 4))
    log.warning("top-users board contended; left for the next entry", extra={"board": pk})


def top_users(paywall_id: str, environment: str, days: list[str], *, limit: int = TOP_USERS) -> list[tuple[str, int]]:
    """The biggest spenders over `days` from the boards: exact for one day; over several days the
    sum of each user's spend on the days they were among that day's top (a lower bound), read from
    days x BOARD_SHARDS small items whatever the number of users."""
    keys = [(board_pk(paywall_id, environment, d), f"S#{s:02d}") for d in days for s in range(BOARD_SHARDS)]
    totals: dict[str, int] = {}
    for item in store.batch_get(keys):
        for user, value in (item.get("top") or {}).items():
            totals[user] = totals.get(user, 0) + int(value)
    return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def stream_image(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The new item of an INSERT stream record, decoded; None for anything else."""
    if record.get("eventName") != "INSERT":
        return None
    image = (record.get("dynamodb") or {}).get("NewImage")
    return store.decode(image) if image else None
