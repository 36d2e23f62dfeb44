"""A deterministic, realistic sample catalog for demos, tests and benchmarks.

``seed_catalog(engine, items, seed)`` writes about ``items / 50`` profiles and ``items`` content rows
drawn with ``numpy.random.default_rng(seed)`` (heavy-tailed counts, categories, keywords, dates over
the two years before a reference instant): the same seed gives the same rows, ids included.

Speed (1,000,000 items in well under two minutes): values are drawn as numpy arrays, inserted in
chunks of ``CHUNK`` (one transaction each) with their rendered ``item_json``; the secondary indexes
are dropped during a large load and rebuilt once at the end.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import numpy as np
from sqlalchemy import Engine, func, select, text
from sqlalchemy.schema import CreateIndex, DropIndex

from .filters import ACCOUNT_TYPES, CONTENT_TYPES
from .importer import ContentKeysExhausted
from .queries import ITEM_COLUMNS, PROFILE_COLUMNS, bump_version, catalog_state, content_count, new_epoch
from .rendering import derived_columns
from .tables import CONTENT_SECONDARY_INDEXES, MAX_CONTENT_KEY, content, primary_profiles
from .text_index import create_text_index, drop_text_index

log = logging.getLogger(__name__)

#: Seeded dates lie in the ``SPAN_SECONDS`` before the seed's reference instant.
SPAN_SECONDS = 730 * 86400
CHUNK = 50_000
ITEMS_PER_PROFILE = 50

#: primary category -> "secondary categories|tertiary categories|keywords", each comma-separated.
_CATEGORY_TABLE = {
    "Fitness": "Strength,Cardio,Yoga|Home Workout,Gym,Outdoor|workout,gains,hiit,stretching,protein,mobility",
    "Food": "Recipes,Restaurants,Baking|Quick Meals,Street Food,Desserts|recipe,pasta,vegan,brunch,airfryer,dessert",
    "Travel": "Destinations,Tips,Hotels|Europe,Asia,Budget|wanderlust,beach,roadtrip,backpacking,sunset,hiddengem",
    "Fashion": "Streetwear,Luxury,Thrift|Outfits,Accessories,Sneakers|ootd,style,vintage,haul,lookbook,sneakers",
    "Beauty": "Makeup,Skincare,Hair|Tutorial,Review,Routine|skincare,glowup,makeup,haircare,serum,lipstick",
    "Technology": "Gadgets,Software,AI|Review,Unboxing,Tips|iphone,coding,ai,setup,gadget,productivity",
    "Business": ("Entrepreneurship,Marketing,Finance|Startups,Investing,Sales"
                 "|startup,marketing,money,investing,sidehustle,branding"),
    "Comedy": "Skits,Pranks,Memes|Relatable,Parody,Stand-up|funny,meme,prank,relatable,comedy,lol",
    "Music": "Covers,Production,Dance|Guitar,Beats,Choreography|cover,guitar,beats,dance,singing,producer",
    "Education": "Science,History,Languages|Explainers,Facts,Study Tips|learn,science,history,facts,studytips,spanish",
    "Pets": "Dogs,Cats,Exotic|Training,Funny Pets,Care|puppy,cat,dogtraining,cute,petcare,rescue",
    "Gaming": "Esports,Streaming,Retro|Highlights,Walkthrough,Setup|gaming,fortnite,minecraft,esports,retro,gamer",
    "Home": "Interior,DIY,Gardening|Decor,Renovation,Plants|homedecor,diy,plants,renovation,organization,cozy",
    "Sports": "Football,Basketball,Tennis|Highlights,Training,Fans|football,nba,goal,tennis,training,matchday",
    "Parenting": "Babies,Toddlers,Family|Tips,Activities,Daily Life|momlife,baby,toddler,family,parenting,kids",
}
#: primary category -> (secondary categories, tertiary categories, keywords)
CATEGORIES: dict[str, tuple[tuple[str, ...], ...]] = {
    name: tuple(tuple(part.split(",")) for part in spec.split("|")) for name, spec in _CATEGORY_TABLE.items()}
LANGUAGES = ("en", "es", "pt", "fr", "de", "it", "hi", "ar", "ja")
LANGUAGE_WEIGHTS = (0.55, 0.14, 0.09, 0.05, 0.05, 0.04, 0.04, 0.02, 0.02)
CONTENT_STYLES = tuple("talking_head tutorial vlog skit voiceover slideshow behind_the_scenes review montage".split())
#: Shares of filters.ACCOUNT_TYPES and filters.CONTENT_TYPES, in their order.
ACCOUNT_WEIGHTS = (0.45, 0.2, 0.2, 0.15)
CONTENT_TYPE_WEIGHTS = (0.7, 0.25, 0.05)
_ADJECTIVES = "daily urban happy wild golden tiny epic cozy bold fresh lazy smart sunny quiet rapid lucky".split()
_NOUNS = "chef coder runner nomad artist guru fox wave studio lab kitchen journey club corner vibes diaries".split()
_HOOKS = ("You need to try this", "Nobody talks about this", "Day 1 of", "The secret to", "POV:", "3 tips for",
          "Watch till the end:", "How I learned", "Stop doing this with", "My favourite")
_ALPHABET = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-", dtype="S1")
_SHORTCODE_STEP = np.uint64(0x9E3779B97F4A7C15)  # odd, hence invertible modulo 2**60


@dataclass
class SeedReport:
    profiles: int
    items: int
    seconds: float


def generate_profiles(rng: np.random.Generator, count: int, reference: datetime) -> tuple[list[dict], dict]:
    """``count`` author profiles: their rows, and the columns ``generate_content`` draws authors from."""
    followers = np.minimum(rng.lognormal(mean=9.5, sigma=1.8, size=count), 80_000_000).astype(np.int64)
    verified = rng.random(count) < np.clip(np.log10(followers + 1) / 7.0 - 0.55, 0.01, 0.95)
    account = rng.choice(len(ACCOUNT_TYPES), size=count, p=ACCOUNT_WEIGHTS)
    language = rng.choice(len(LANGUAGES), size=count, p=LANGUAGE_WEIGHTS)
    category = rng.integers(0, len(CATEGORIES), size=count)
    adjective = rng.integers(0, len(_ADJECTIVES), size=count)
    noun = rng.integers(0, len(_NOUNS), size=count)
    posts_count = rng.integers(20, 3000, size=count)
    names = list(CATEGORIES)
    rows = []
    for i in range(count):
        first, second, key = _ADJECTIVES[adjective[i]], _NOUNS[noun[i]], i + 1
        username = f"{first}_{second}_{key}"
        followers_i = int(followers[i])
        rows.append({
            "id": key,
            "username": username,
            "profile_name": f"{first.title()} {second.title()} {key}",
            "bio": f"{names[category[i]]} creator. New videos every week.",
            "followers": followers_i,
            "posts_count": int(posts_count[i]),
            "is_verified": bool(verified[i]),
            "is_business_account": ACCOUNT_TYPES[account[i]] == "Business Page",
            "profile_url": f"https://www.instagram.com/{username}/",
            "profile_image_url": f"https://i.pravatar.cc/150?u={username}",
            "profile_image_path": None,
            "account_type": ACCOUNT_TYPES[account[i]],
            "language": LANGUAGES[language[i]],
            "total_reels": 0,
            "median_views": int(followers_i * 0.3),
            "mean_views": int(followers_i * 0.45),
            "profile_primary_category": names[category[i]],
            "created_at": reference,
            "updated_at": reference,
        })
    columns = {"id": np.arange(1, count + 1, dtype=np.int64), "followers": followers, "language": language,
               "category": category, "username": [row["username"] for row in rows]}
    return rows, columns


def shortcodes(numbers: np.ndarray, seed: int) -> list[str]:
    """Distinct 10-character shortcodes for distinct row numbers (an affine bijection modulo 2**60)."""
    offset = np.uint64((seed * 0x632BE59BD9B4E019 + 12345) % (1 << 60))
    with np.errstate(over="ignore"):
        codes = (numbers.astype(np.uint64) * _SHORTCODE_STEP + offset) & np.uint64((1 << 60) - 1)
    shifts = np.arange(10, dtype=np.uint64) * np.uint64(6)
    digits = ((codes[:, None] >> shifts[None, :]) & np.uint64(63)).astype(np.intp)
    letters = _ALPHABET[digits]
    return np.ascontiguousarray(letters).view("S10").ravel().astype(str).tolist()


def generate_content(rng: np.random.Generator, start: int, count: int, profiles: dict,
                     seed: int, reference: datetime, first_key: int = 1) -> dict[str, list]:
    """Columns (name -> values) of rows ``start .. start+count-1``, posted in the span before ``reference``;
    row ``n`` gets the id ``first_key + n``."""
    n_profiles = len(profiles["id"])
    author = np.minimum((rng.pareto(1.2, size=count) * n_profiles / 8).astype(np.int64), n_profiles - 1)
    author = (author + rng.integers(0, n_profiles, size=count) * (rng.random(count) < 0.5)) % n_profiles
    followers = profiles["followers"][author].astype(np.float64)
    kind = rng.choice(len(CONTENT_TYPES), size=count, p=CONTENT_TYPE_WEIGHTS)
    expected_views = np.maximum(followers * 0.3, 50.0)
    performance = rng.lognormal(mean=0.0, sigma=1.1, size=count)
    views = np.where(kind == 1, 0, np.minimum(expected_views * performance, 2e9)).astype(np.int64)
    like_rate = rng.lognormal(mean=np.log(0.04), sigma=0.5, size=count)
    likes_base = np.where(kind == 1, np.maximum(followers * 0.05, 10.0) * performance, views)
    likes = np.minimum(likes_base * like_rate, 1e9).astype(np.int64)
    comments = (likes * rng.lognormal(mean=np.log(0.02), sigma=0.7, size=count)).astype(np.int64)
    outlier = np.round(np.clip(performance, 0.05, 250.0), 2)
    offsets = rng.integers(0, SPAN_SECONDS, size=count)
    category = np.where(rng.random(count) < 0.7, profiles["category"][author],
                        rng.integers(0, len(CATEGORIES), size=count))
    secondary = rng.integers(0, 3, size=count)
    tertiary = rng.integers(0, 3, size=count)
    keyword_pick = rng.integers(0, 6, size=(count, 4))
    keyword_count = rng.integers(1, 5, size=count)
    hook = rng.integers(0, len(_HOOKS), size=count)
    style = rng.integers(0, len(CONTENT_STYLES), size=count)
    language = np.where(rng.random(count) < 0.85, profiles["language"][author],
                        rng.choice(len(LANGUAGES), size=count, p=LANGUAGE_WEIGHTS))
    confidence = np.round(rng.uniform(0.55, 0.99, size=count), 2)

    numbers = np.arange(start, start + count, dtype=np.int64)
    codes = shortcodes(numbers, seed)
    names = list(CATEGORIES)
    primary = [names[i] for i in category.tolist()]
    usernames = [profiles["username"][i] for i in author.tolist()]
    types = [CONTENT_TYPES[i] for i in kind.tolist()]
    keywords, descriptions, secondaries_out, tertiaries_out, urls, thumbnails = [], [], [], [], [], []
    for i, (cat, code, ctype, user) in enumerate(zip(primary, codes, types, usernames)):
        secondaries, tertiaries, vocabulary = CATEGORIES[cat]
        words = list(dict.fromkeys(vocabulary[k] for k in keyword_pick[i, :keyword_count[i]].tolist()))
        second = secondaries[secondary[i]]
        descriptions.append(f"{_HOOKS[hook[i]]} {words[0]} {second.lower()} " + " ".join("#" + w for w in words))
        keywords.append(words + [None] * (4 - len(words)))
        secondaries_out.append(second)
        tertiaries_out.append(tertiaries[tertiary[i]])
        path = "reel" if ctype == "reel" else ("p" if ctype == "post" else "stories/" + user)
        urls.append(f"https://www.instagram.com/{path}/{code}/")
        thumbnails.append(f"https://picsum.photos/seed/{code}/400/700")
    posted = (np.datetime64(reference.astimezone(timezone.utc).replace(tzinfo=None), "s")
              - offsets.astype("timedelta64[s]"))
    return {
        "id": (numbers + first_key).tolist(),
        "content_id": [f"s{seed}-{n}" for n in numbers.tolist()],
        "shortcode": codes,
        "content_type": types,
        "url": urls,
        "description": descriptions,
        "thumbnail_url": thumbnails,
        **{name: [None] * count for name in ("thumbnail_path", "display_url_path", "video_thumbnail_path")},
        "view_count": views.tolist(),
        "like_count": likes.tolist(),
        "comment_count": comments.tolist(),
        "outlier_score": outlier.tolist(),
        "date_posted": posted,  # numpy datetime64[s], UTC
        "username": usernames,
        "language": [LANGUAGES[i] for i in language.tolist()],
        "content_style": [CONTENT_STYLES[i] for i in style.tolist()],
        "primary_category": primary,
        "secondary_category": secondaries_out,
        "tertiary_category": tertiaries_out,
        "categorization_confidence": confidence.tolist(),
        **{f"keyword_{slot + 1}": [words[slot] for words in keywords] for slot in range(4)},
        "all_image_urls": [[t] if ctype == "post" else None for t, ctype in zip(thumbnails, types)],
        "created_at": [reference] * count,
        "updated_at": [reference] * count,
        "profile_id": profiles["id"][author].tolist(),
    }


#: The profile columns an item shows, by name.
_ITEM_PROFILE_FIELDS = tuple(column.name for column in PROFILE_COLUMNS)
#: The generated columns an item is rendered from.
_RENDER_INPUTS = tuple(column.name for column in ITEM_COLUMNS) + ("profile_id",)
#: Seeds of at least this many items render in worker processes, overlapping generation and inserts.
PARALLEL_RENDER_ITEMS = 20_000
#: Seeds of at least this many items drop the secondary indexes for their load and build them after.
REBUILD_INDEXES_ITEMS = 20_000


def render_generated(columns: dict[str, list], profiles_by_id: dict[int, dict]) -> dict[str, list]:
    """The derived columns (``derived_columns``) of generated rows, built from the columns as the
    database will return them: column name -> values."""
    names = [column.name for column in ITEM_COLUMNS]
    posted = np.char.add(np.datetime_as_string(columns["date_posted"], unit="s"), "Z").tolist()
    values = zip(*(posted if name == "date_posted" else columns[name] for name in names))
    derived = [derived_columns(dict(zip(names, row), **profiles_by_id[profile_id]))
               for row, profile_id in zip(values, columns["profile_id"])]
    return {name: [row[name] for row in derived] for name in derived[0]} if derived else {}


_worker_profiles: dict[int, dict] = {}


def _start_render_worker(profiles_by_id: dict[int, dict]) -> None:
    _worker_profiles.update(profiles_by_id)


def _render_in_worker(columns: dict[str, list]) -> list[str]:
    return render_generated(columns, _worker_profiles)


class ItemRenderer:
    """Renders generated chunks inline, or (``parallel``) in spawned worker processes (which must not
    inherit the engine's connections) while the caller inserts."""

    def __init__(self, profile_rows: list[dict], parallel: bool) -> None:
        self.profiles_by_id = {row["id"]: {name: row[name] for name in _ITEM_PROFILE_FIELDS} for row in profile_rows}
        #: Chunks to keep rendering ahead of the one being inserted (one per worker).
        self.ahead = max(1, min(3, (os.cpu_count() or 1) - 1)) if parallel else 0
        self.pool = ProcessPoolExecutor(self.ahead, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_start_render_worker,
                                        initargs=(self.profiles_by_id,)) if parallel else None

    def submit(self, columns: dict[str, list]) -> Future:
        if self.pool is not None:
            return self.pool.submit(_render_in_worker, {name: columns[name] for name in _RENDER_INPUTS})
        done: Future = Future()
        done.set_result(render_generated(columns, self.profiles_by_id))
        return done

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def insert_content_columns(conn, columns: dict[str, list]) -> None:
    """Insert generated columns. SQLite takes a fast path: the Core-compiled INSERT by executemany on plain
    tuples, the per-row bind processing done here in bulk (dates as SQLite DateTime stores them, JSON
    pre-encoded); other databases, Core executemany."""
    if conn.dialect.name != "sqlite":
        posted = [datetime.fromtimestamp(int(value), timezone.utc)
                  for value in columns["date_posted"].astype("datetime64[s]").astype(np.int64).tolist()]
        names = list(columns)
        values = [posted if name == "date_posted" else columns[name] for name in names]
        conn.execute(content.insert(), [dict(zip(names, row)) for row in zip(*values)])
        return
    compiled = content.insert().compile(dialect=conn.dialect, column_keys=list(columns))
    count = len(columns["id"])
    posted = np.char.replace(np.datetime_as_string(columns["date_posted"], unit="us"), "T", " ").tolist()
    stamp = columns["created_at"][0].astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    converted = {**columns, "date_posted": posted, "created_at": [stamp] * count, "updated_at": [stamp] * count,
                 "all_image_urls": [None if urls is None else json.dumps(urls) for urls in columns["all_image_urls"]]}
    ordered = [converted[name] for name in compiled.positiontup]
    conn.exec_driver_sql(compiled.string, list(zip(*ordered)))


class CatalogNotEmpty(Exception):
    """Seeding refuses to mix a sample catalog into existing content unless asked to replace it."""


def _tune_sqlite_for_bulk(conn) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA synchronous=OFF")
        conn.exec_driver_sql("PRAGMA temp_store=MEMORY")


def _delete_all(conn) -> None:
    """Every content row and profile gone. PostgreSQL truncates both at once: a ``DELETE`` of the
    profiles checks each against ``content`` by a scan of the table (at 200k items, 0.1 s a profile)."""
    if conn.dialect.name == "postgresql":
        tables = ", ".join(conn.dialect.identifier_preparer.format_table(table) for table in (content, primary_profiles))
        conn.execute(text(f"TRUNCATE {tables}"))  # the sequences go on: new ids follow the old ones
    else:
        conn.execute(content.delete())
        conn.execute(primary_profiles.delete())


def _reset_sequences(conn) -> None:
    """PostgreSQL: move the id sequences past the explicit ids the seed wrote."""
    if conn.dialect.name != "postgresql":
        return
    for table in (content, primary_profiles):
        largest = select(func.coalesce(func.max(table.c.id), 0) + 1).scalar_subquery()
        conn.execute(select(func.setval(func.pg_get_serial_sequence(table.name, "id"), largest, False)))


def _insert_chunk(engine: Engine, columns: dict[str, list], rendered: Future,
                  progress: Callable[[int], None] | None) -> None:
    columns.update(rendered.result())
    with engine.begin() as conn:
        _tune_sqlite_for_bulk(conn)
        columns["item_version"] = [bump_version(conn)] * len(columns["id"])
        insert_content_columns(conn, columns)
    if progress:
        progress(len(columns["id"]))


def seed_catalog(engine: Engine, items: int, seed: int = 0, *, reference: datetime, replace: bool = False,
                 progress: Callable[[int], None] | None = None) -> SeedReport:
    """Write the sample catalog of ``seed`` with ``items`` content rows posted before ``reference``;
    ``CatalogNotEmpty`` when content exists, unless ``replace``. ``progress`` gets rows per chunk."""
    started = time.perf_counter()
    rebuild_indexes = items >= REBUILD_INDEXES_ITEMS
    with engine.begin() as conn:
        existing = content_count(conn)
        if existing and not replace:
            raise CatalogNotEmpty(f"the catalog already holds {existing} items; pass --replace to rebuild it")
        # The version first, as every catalog writer takes it (importer.py): its row's lock, then the
        # tables'. Taken after the TRUNCATE, an import holding the version and waiting on the table
        # deadlocked with this transaction.
        bump_version(conn)
        # A new row keeps the key of the row of its content_id it replaces (the same item, as an
        # import's update in place: a session that was served it is not served it again) and takes
        # no other's: the rest get keys past the old ones, new items, as an import's (a new epoch).
        kept = {name: key for name, key in conn.execute(select(content.c.content_id, content.c.id))} if existing else {}
        first_key = catalog_state(conn).largest_key + 1
        if first_key - 1 + items > MAX_CONTENT_KEY:
            raise ContentKeysExhausted(f"the new rows' ids would pass {MAX_CONTENT_KEY}: seed into a new catalog")
        if rebuild_indexes:
            # Before the delete, which visits every row: without them it runs several times faster.
            for index in CONTENT_SECONDARY_INDEXES:  # IF EXISTS: SQLAlchemy reflects no expression index
                conn.execute(DropIndex(index, if_exists=True))
            drop_text_index(conn)
        _delete_all(conn)
        new_epoch(conn)  # rows were deleted: item snapshots of the old rows start over
    rng = np.random.default_rng(seed)
    n_profiles = max(1, items // ITEMS_PER_PROFILE) if items else 0
    profile_rows, profiles = generate_profiles(rng, n_profiles, reference)
    with engine.begin() as conn:
        _tune_sqlite_for_bulk(conn)
        bump_version(conn)
        if profile_rows:
            conn.execute(primary_profiles.insert(), profile_rows)
    renderer = ItemRenderer(profile_rows, parallel=items >= PARALLEL_RENDER_ITEMS)
    try:
        waiting: list[tuple[dict, Future]] = []  # generated chunks whose items are being rendered
        for start in range(0, items, CHUNK):
            columns = generate_content(rng, start, min(CHUNK, items - start), profiles, seed, reference, first_key)
            if kept:
                columns["id"] = [kept.get(name, key) for name, key in zip(columns["content_id"], columns["id"])]
            waiting.append((columns, renderer.submit(columns)))
            if len(waiting) > renderer.ahead:  # insert the oldest chunk while the later ones render
                _insert_chunk(engine, *waiting.pop(0), progress)
        for columns, rendered in waiting:
            _insert_chunk(engine, columns, rendered, progress)
    finally:
        renderer.close()
        if rebuild_indexes:
            with engine.begin() as conn:
                for index in CONTENT_SECONDARY_INDEXES:
                    conn.execute(CreateIndex(index, if_not_exists=True))
            create_text_index(engine)
    with engine.begin() as conn:
        _reset_sequences(conn)
        conn.exec_driver_sql("ANALYZE")
    seconds = time.perf_counter() - started
    log.info("seeded %d items and %d profiles (seed %d) in %.1f s", items, n_profiles, seed, seconds)
    return SeedReport(profiles=n_profiles, items=items, seconds=seconds)
