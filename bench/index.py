"""``dupwatch bench index``: Milvus insert throughput and search latency per index type.

Synthetic unit vectors (IP metric) in a collection shaped like ``<prefix>_video_coarse``
(VARCHAR pk, tenant partition key, one FLOAT_VECTOR), ``n`` rows inserted in batches, then
``queries`` searches (top-k, tenant filter) timed one by one. The same code runs against Milvus
Lite (a ``*.db`` path) and a server (``http://host:port``); the results decide
``index.schema.DEFAULT_SPECS``.

Measured on the shared 2-core dev VM (other jobs running; dim 256, 4 tenants, top-k 50 with a
tenant filter, 50 queries, self-recall@50 = 1.0 everywhere)::

    backend / consistency      rows   index     insert rows/s  search p50 / p95 ms
    Lite 3.2.2                  10k   FLAT           6 615        30 /   56
    Lite 3.2.2                  10k   IVF_FLAT       7 820        24 /   49
    Lite 3.2.2                  10k   HNSW           4 381        57 /  132
    Lite 3.2.2                 100k   FLAT           4 155       312 /  550
    Lite 3.2.2                 100k   IVF_FLAT       2 287       840 / 1548
    Lite 3.2.2                 100k   HNSW           2 758      1107 / 1805
    Lite 3.2.2                   1M   FLAT           3 625      2344 / 2822   (30 queries)
    server 2.3.5, Strong        10k   FLAT/IVF/HNSW  11 236 / 7 461 / 7 133   200 / 400 (all three)
    server 2.3.5, Strong       100k   FLAT           8 143       201 /  404
    server 2.3.5, Strong       100k   IVF_FLAT       6 516       322 /  909
    server 2.3.5, Strong       100k   HNSW           6 123       207 /  499
    server 2.3.5, Bounded      100k   FLAT           9 972        11 /   16
    server 2.3.5, Bounded      100k   HNSW           7 911        13 /   23
    server 2.3.5, Bounded        1M   HNSW           7 715        20 /   85   (30 queries)

At 1M rows Lite FLAT is still exact (self-recall 1.0) but a search costs ~2.3 s: Milvus Lite 3.2.2
concatenates every vector of the collection for each search/query
(``milvus_lite.search.assembler.assemble_candidates``), so its latency grows linearly with rows
(~0.03 s at 10k, 0.3 s at 100k, 2.3 s at 1M); the process held ~2.6 GB while searching. The
server's 1M HNSW row was searched right after ``flush`` (2.8 s); the server builds segment
indexes in the background, so some searches may have hit not-yet-indexed segments (recall 1.0).

Decisions (``index.schema``): Lite uses FLAT (fastest with the tenant filter at 100k, exact, no
build); the server uses HNSW for the searched collections (no gain measured up to 100k, where
FLAT is as fast, but FLAT grows linearly with the corpus and HNSW does not); on the server the
Strong consistency wait (~200 ms per search) dominates, hence
``MilvusConfig.search_consistency_level``.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

INDEX_PARAMS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "FLAT": ({}, {}),
    "IVF_FLAT": ({"nlist": 256}, {"nprobe": 16}),
    "HNSW": ({"M": 16, "efConstruction": 200}, {"ef": 128}),
}


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def bench_one(
    uri: str, index_type: str, n: int, dim: int, *, queries: int = 100, top_k: int = 50, batch: int = 2000, tenants: int = 4, seed: int = 0,
    consistency: str = "Strong",
) -> dict[str, Any]:
    from pymilvus import DataType, MilvusClient

    client = MilvusClient(uri=uri)
    name = f"bench_{index_type.lower()}_{uuid.uuid4().hex[:8]}"
    build, search = INDEX_PARAMS[index_type]
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
    schema.add_field("tenant", DataType.VARCHAR, max_length=64, is_partition_key=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
    params = client.prepare_index_params()
    params.add_index(field_name="vector", index_type=index_type, metric_type="IP", params=build)
    client.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")
    rng = np.random.default_rng(seed)
    data = _unit(rng, n, dim)
    try:
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            rows = [
                {"id": f"v{i}#v", "tenant": f"t{i % tenants}", "vector": data[i].tolist()}
                for i in range(start, min(n, start + batch))
            ]
            client.insert(name, rows)
        insert_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        client.flush(name) if hasattr(client, "flush") else None
        flush_s = time.perf_counter() - t0
        picks = rng.integers(0, n, size=queries)
        qs = data[picks] + 0.05 * _unit(rng, queries, dim)
        latencies = []
        recall_hits = 0
        for qi, q in zip(picks, qs):
            t = time.perf_counter()
            res = client.search(
                name,
                data=[q.tolist()],
                limit=top_k,
                filter=f'tenant == "t{qi % tenants}"',
                search_params={"metric_type": "IP", "params": search},
                consistency_level=consistency,
            )
            latencies.append(time.perf_counter() - t)
            recall_hits += int(any(h["id"] == f"v{qi}#v" for h in res[0]))
        lat = sorted(latencies)
        return {
            "uri_kind": "lite" if not uri.startswith("http") else "server",
            "index_type": index_type,
            "rows": n,
            "dim": dim,
            "insert_rows_per_s": round(n / insert_s, 1),
            "flush_index_s": round(flush_s, 2),
            "search_p50_ms": round(1000 * statistics.median(lat), 2),
            "search_p95_ms": round(1000 * lat[int(0.95 * (len(lat) - 1))], 2),
            "self_recall_at_k": round(recall_hits / len(picks), 3),
            "top_k": top_k,
            "consistency": consistency,
        }
    finally:
        client.drop_collection(name)
        client.close()


def run(
    uri: str, sizes: Sequence[int], index_types: Sequence[str], dim: int, queries: int, consistency: str = "Strong"
) -> list[dict[str, Any]]:
    results = []
    for n in sizes:
        for index_type in index_types:
            result = bench_one(uri, index_type, n, dim, queries=queries, consistency=consistency)
            print(json.dumps(result), flush=True)
            results.append(result)
    return results
