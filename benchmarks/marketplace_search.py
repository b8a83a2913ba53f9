"""Marketplace search latency over 10,000 listed assets, against a plain LIKE scan.

    .venv/bin/python benchmarks/marketplace_search.py                  # SQLite and PostgreSQL
    .venv/bin/python benchmarks/marketplace_search.py --engine sqlite --assets 10000

Seeds ``--assets`` listed assets (names of 3 words, descriptions of ~40 words, 3 tags, from
a vocabulary of 3,000 made-up words with a Zipf-like frequency) through the ORM tables (so
SQLite's FTS5 triggers and PostgreSQL's GIN index see every row), then times
``--queries`` searches, each as a tenant would call it (``MarketStore.search``: a session in
the tenant's row-level-security scope, the visibility filter, the full-text match, a sort,
one page of 20, the rows turned into JSON):

- search: one or two words, alone or with a filter (type, price range), sorted by
  relevance or rating;
- baseline: the same words as ``name/description/tags LIKE '%word%'`` over the same
  visible rows, newest first, one page of 20, in the same kind of session.

Prints p50/p99 of each and the ratio, and writes benchmarks/results/marketplace_search.json.
PostgreSQL is a throwaway cluster (tests.harness.PostgresCluster).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert, or_, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fedhub import db  # noqa: E402
from fedhub.marketplace.fulltext import Query, visible  # noqa: E402
from fedhub.marketplace.models import Asset  # noqa: E402
from fedhub.marketplace.shapes import asset_row  # noqa: E402
from fedhub.marketplace.store import Actor, MarketStore  # noqa: E402
from fedhub.tenancy.models import Role  # noqa: E402
from fedhub.tenancy.store import TenantStore  # noqa: E402

TYPES = ("algorithm", "model", "dataset", "notebook")
CATEGORIES = ("strategies", "vision", "tabular", "graphs", "language", "health")
LICENCES = ("free", "academic", "commercial")


def vocabulary(rng: random.Random, n: int = 3000) -> list[str]:
    syllables = ["fed", "prox", "avg", "net", "graph", "sec", "agg", "dif", "priv", "lin",
                 "tor", "ka", "mo", "ri", "zen", "lu", "pa", "vo", "qu", "te"]  # fmt: skip
    words: set[str] = set()
    while len(words) < n:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def seed(url: str, n: int, rng: random.Random, words: list[str]) -> None:
    weights = [1 / (i + 1) for i in range(len(words))]  # Zipf-like: a few common words
    now = datetime(2026, 11, 1)
    rows = []
    for i in range(n):
        pick = rng.choices(words, weights, k=46)
        price = Decimal(rng.choice([0, 0, 5, 10, 25, 49, 99, 199])) + Decimal("0.99")
        rows.append({
            "tenant": rng.choice(["acme", "initech", "umbrella"]),
            "slug": f"asset-{i}",
            "name": " ".join(pick[:3]).title(),
            "asset_type": rng.choice(TYPES),
            "category": rng.choice(CATEGORIES),
            "description": " ".join(pick[3:43]),
            "tags": " ".join(pick[43:46]),
            "licence": rng.choice(LICENCES),
            "price": price,
            "price_cents": int(price * 100),
            "pricing": "one_off",
            "currency": "USD",
            "per_seat": False,
            "state": "listed",
            "created_at": now - timedelta(minutes=i),
            "listed_at": now - timedelta(minutes=i),
            "downloads": rng.randint(0, 5000),
            "rating_count": (count := rng.randint(0, 40)),
            "rating_sum": (total := sum(rng.randint(1, 5) for _ in range(count))),
            "rating": round(total / count, 4) if count else 0.0,
        })  # fmt: skip
    with db.session_scope(url) as s:
        for start in range(0, n, 1000):
            s.execute(insert(Asset), rows[start : start + 1000])
        if s.get_bind().dialect.name == "postgresql":
            s.connection().exec_driver_sql("ANALYZE fedhub_market_assets")


def queries(rng: random.Random, words: list[str], n: int) -> list[Query]:
    middle = words[20:600]  # neither the commonest words nor ones that never occur
    out = []
    for _ in range(n):
        text = " ".join(rng.sample(middle, rng.choice([1, 1, 2])))
        extra = rng.choice([
            {}, {"asset_type": rng.choice(TYPES)},
            {"min_price": Decimal("5"), "max_price": Decimal("100")},
        ])  # fmt: skip
        out.append(Query(text=text, sort=rng.choice(["relevance", "rating"]), **extra))
    return out


def like_baseline(market: MarketStore, actor: Actor, q: Query) -> list[dict]:
    """The same words as substring scans, newest first: what a search without an index does."""
    with market.session(actor) as s:
        stmt = select(Asset).where(visible(actor.tenant, False))
        for word in q.text.split():
            pattern = f"%{word}%"
            stmt = stmt.where(or_(Asset.name.ilike(pattern), Asset.description.ilike(pattern),
                                  Asset.tags.ilike(pattern)))  # fmt: skip
        stmt = stmt.order_by(Asset.listed_at.desc(), Asset.id.desc()).limit(21)
        return [asset_row(a) for a in s.scalars(stmt)]


def timed(fn, items) -> tuple[list[float], int]:
    times, found = [], 0
    for item in items:
        start = time.perf_counter()
        result = fn(item)
        times.append((time.perf_counter() - start) * 1000)
        found += bool(result)
    return times, found


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run(engine: str, n_assets: int, n_queries: int) -> dict:
    rng = random.Random(0)
    words = vocabulary(rng)
    cluster = None
    if engine == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp(prefix='market-bench-')}/fedhub.sqlite"
    else:
        from tests.harness import PostgresCluster

        cluster = PostgresCluster.start()
        url = cluster.create_database("market_bench")
    try:
        db.upgrade(url)
        tenants = TenantStore(url)
        tenants.create_tenant("globex", tier="starter")
        t0 = time.perf_counter()
        seed(url, n_assets, rng, words)
        seeded = time.perf_counter() - t0
        market = MarketStore(url, tenants)
        actor = Actor("globex-admin", "globex", Role.TENANT_ADMIN)
        qs = queries(rng, words, n_queries)
        timed(lambda q: market.search(actor, q)[0], qs[:20])  # warm caches and plans
        timed(lambda q: like_baseline(market, actor, q), qs[:20])
        search_ms, search_found = timed(lambda q: market.search(actor, q)[0], qs)
        like_ms, like_found = timed(lambda q: like_baseline(market, actor, q), qs)
        return {
            "engine": engine,
            "assets": n_assets,
            "queries": n_queries,
            "seed_seconds": round(seeded, 2),
            "search_p50_ms": round(statistics.median(search_ms), 2),
            "search_p99_ms": round(pct(search_ms, 99), 2),
            "like_p50_ms": round(statistics.median(like_ms), 2),
            "like_p99_ms": round(pct(like_ms, 99), 2),
            "p99_ratio_like_over_search": round(pct(like_ms, 99) / pct(search_ms, 99), 1),
            "queries_with_results": {"search": search_found, "like": like_found},
        }
    finally:
        db.dispose_engines()
        if cluster is not None:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--assets", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args()
    engines = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    results = [run(e, args.assets, args.queries) for e in engines]
    print("| engine | assets | search p50 | search p99 | LIKE p50 | LIKE p99 | LIKE/search (p99) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['engine']} | {r['assets']:,} | {r['search_p50_ms']} ms | "
              f"{r['search_p99_ms']} ms | {r['like_p50_ms']} ms | {r['like_p99_ms']} ms | "
              f"{r['p99_ratio_like_over_search']}x |")  # fmt: skip
    out = ROOT / "benchmarks" / "results" / "marketplace_search.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
