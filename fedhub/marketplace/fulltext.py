"""Full-text search over listed assets: FTS5 on SQLite, tsvector + GIN on PostgreSQL.

Both engines search the same document (name, description, tags) through SQLAlchemy:
SQLite joins the ``fedhub_market_fts`` table (kept by triggers, migration 0025) and ranks
by its ``bm25``; PostgreSQL matches the stored ``search_vector`` column
(``to_tsvector('english', <the document>)``, GIN-indexed) and ranks by ``ts_rank``. Under
row-level security the planner cannot use the index for ``@@`` (not leakproof), so a
tenant's search would scan every row; so the search runs in two steps
(:meth:`fedhub.marketplace.store.MarketStore.search`): the ids of one page as platform work
with this module's visibility filter (listed assets plus the caller's tenant's pending
ones), which uses the index, then those rows read in the caller's own scope, where
row-level security drops any row the caller may not see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import Select, and_, column, func, literal_column, or_, select, table
from sqlalchemy.orm import Session

from fedhub.errors import InvalidRequest
from fedhub.marketplace.models import STANDARD_LICENCES, Asset, AssetType, State

SORTS = ("relevance", "rating", "downloads", "newest")
MAX_LIMIT = 100
_FTS = table("fedhub_market_fts", column("rowid"), column("rank"))
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Query:
    text: str = ""
    asset_type: str | None = None
    category: str | None = None
    licence: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    min_rating: float | None = None
    sort: str = "relevance"
    limit: int = 20
    offset: int = 0

    def checked(self) -> Query:
        if self.sort not in SORTS:
            raise InvalidRequest(f"sort must be one of {', '.join(SORTS)}")
        if self.asset_type is not None and self.asset_type not in set(AssetType):
            raise InvalidRequest(f"type must be one of {', '.join(t.value for t in AssetType)}")
        if self.licence is not None and self.licence not in (*STANDARD_LICENCES, "custom"):
            raise InvalidRequest("licence must be free, academic, commercial or custom")
        if not 1 <= self.limit <= MAX_LIMIT or not 0 <= self.offset <= 100_000:
            raise InvalidRequest(f"limit is 1-{MAX_LIMIT}, offset 0-100000")
        if len(self.text) > 200:
            raise InvalidRequest("the search text is longer than 200 characters")
        return self


def fts5_query(text: str) -> str | None:
    """The user's words as an FTS5 query: each a quoted term (no FTS syntax gets through),
    all required, the last one as a prefix (search as you type)."""
    words = _WORD.findall(text)
    if not words:
        return None
    terms = ['"' + w.replace('"', '""') + '"' for w in words[:16]]
    terms[-1] += "*"
    return " ".join(terms)


def tsquery_text(text: str) -> str | None:
    """The user's words as a PostgreSQL ``to_tsquery`` text: word characters only (no
    operator gets through), all required, the last one as a prefix, as on SQLite."""
    words = [w for w in _WORD.findall(text) if w.strip("_")][:16]
    if not words:
        return None
    return " & ".join(words[:-1] + [words[-1] + ":*"])


def visible(tenant: str | None, platform_admin: bool):
    """Listed assets, plus the caller's own tenant's pending ones (platform admins: all
    pending ones, which they review)."""
    if platform_admin:
        return Asset.state.in_((State.LISTED.value, State.PENDING_REVIEW.value))
    own = and_(Asset.tenant == tenant, Asset.state == State.PENDING_REVIEW.value)
    return or_(Asset.state == State.LISTED.value, own) if tenant else Asset.state == "listed"


def statement(session: Session, q: Query, tenant: str | None, platform_admin: bool) -> Select:
    stmt = select(Asset.id).where(visible(tenant, platform_admin))
    relevance = None
    if tsquery_text(q.text):
        if session.get_bind().dialect.name == "postgresql":
            document = literal_column("fedhub_market_assets.search_vector")
            tsquery = func.to_tsquery(literal_column("'english'::regconfig"), tsquery_text(q.text))
            stmt = stmt.where(document.bool_op("@@")(tsquery))
            relevance = func.ts_rank(document, tsquery).desc()
        else:
            stmt = stmt.join(_FTS, _FTS.c.rowid == Asset.id).where(
                literal_column("fedhub_market_fts").op("MATCH")(fts5_query(q.text))
            )
            relevance = _FTS.c.rank.asc()  # bm25: lower is better
    if q.asset_type:
        stmt = stmt.where(Asset.asset_type == q.asset_type)
    if q.category:
        stmt = stmt.where(Asset.category == q.category)
    if q.licence == "custom":
        stmt = stmt.where(Asset.licence.not_in(STANDARD_LICENCES))
    elif q.licence:
        stmt = stmt.where(Asset.licence == q.licence)
    if q.min_price is not None:
        stmt = stmt.where(Asset.price_cents >= int(q.min_price * 100))
    if q.max_price is not None:
        stmt = stmt.where(Asset.price_cents <= int(q.max_price * 100))
    if q.min_rating is not None:
        stmt = stmt.where(Asset.rating >= q.min_rating)
    order = {
        "rating": [Asset.rating.desc(), Asset.rating_count.desc()],
        "downloads": [Asset.downloads.desc()],
        "newest": [Asset.listed_at.desc().nulls_first(), Asset.created_at.desc()],
    }
    if q.sort == "relevance" and relevance is not None:
        stmt = stmt.order_by(relevance, Asset.id.desc())
    else:
        key = q.sort if q.sort != "relevance" else "newest"
        stmt = stmt.order_by(*order[key], Asset.id.desc())
    return stmt.offset(q.offset).limit(q.limit + 1)


def search_ids(
    session: Session, q: Query, *, tenant: str | None, platform_admin: bool = False
) -> tuple[list[int], int | None]:
    """One page of asset ids, in order, and the offset of the next page (None: the last)."""
    q = q.checked()
    ids = list(session.scalars(statement(session, q, tenant, platform_admin)))
    more = len(ids) > q.limit
    return ids[: q.limit], (q.offset + q.limit if more else None)
