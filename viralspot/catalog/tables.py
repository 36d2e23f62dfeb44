"""SQLAlchemy Core tables of the catalog: ``content`` and ``primary_profiles``.

``content.id`` is the dense integer key (SQLite's rowid, PostgreSQL's identity)
that the random feed permutes; it never changes once assigned, so it is stable
across restarts. ``catalog_meta`` holds the catalog version, bumped by every
write (seed, import) so that caches of filtered key lists know when to refresh.
``content.item_json`` is the item already rendered for the API (catalog/rendering.py),
and ``content.item_version`` the version of the write that rendered it.
"""
from sqlalchemy import (JSON, BigInteger, Boolean, Column, DateTime, Float, ForeignKey, Index, Integer,
                        MetaData, String, Table, Text)

metadata = MetaData()

#: The largest ``content.id``: random feeds and session stores hold keys in 32 bits (4 bytes per
#: served item), so writers refuse to create a key above it and feeds never reach past it.
MAX_CONTENT_KEY = 2 ** 32 - 1

primary_profiles = Table(
    "primary_profiles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(255), nullable=False, unique=True),
    Column("profile_name", String(255)),
    Column("bio", Text),
    Column("followers", BigInteger, nullable=False, default=0),
    Column("posts_count", Integer, default=0),
    Column("is_verified", Boolean, nullable=False, default=False),
    Column("is_business_account", Boolean, nullable=False, default=False),
    Column("profile_url", Text),
    Column("profile_image_url", Text),
    Column("profile_image_path", Text),
    Column("account_type", String(32)),
    Column("language", String(16)),
    Column("total_reels", Integer, default=0),
    Column("median_views", BigInteger, default=0),
    Column("mean_views", BigInteger, default=0),
    Column("profile_primary_category", String(128)),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
)

content = Table(
    "content",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("content_id", String(255), nullable=False, unique=True),
    Column("shortcode", String(255), nullable=False, unique=True),
    Column("content_type", String(16), nullable=False),
    Column("url", Text),
    Column("description", Text),
    Column("thumbnail_url", Text),
    Column("thumbnail_path", Text),
    Column("display_url_path", Text),
    Column("video_thumbnail_path", Text),
    Column("view_count", BigInteger, nullable=False, default=0),
    Column("like_count", BigInteger, nullable=False, default=0),
    Column("comment_count", BigInteger, nullable=False, default=0),
    Column("outlier_score", Float, nullable=False, default=0.0),
    Column("date_posted", DateTime(timezone=True)),
    Column("username", String(255), nullable=False),
    Column("language", String(16)),
    Column("content_style", String(64)),
    Column("primary_category", String(128)),
    Column("secondary_category", String(128)),
    Column("tertiary_category", String(128)),
    Column("categorization_confidence", Float),
    Column("keyword_1", String(128)),
    Column("keyword_2", String(128)),
    Column("keyword_3", String(128)),
    Column("keyword_4", String(128)),
    Column("all_image_urls", JSON),
    Column("created_at", DateTime(timezone=True)),
    Column("updated_at", DateTime(timezone=True)),
    Column("profile_id", Integer, ForeignKey("primary_profiles.id")),
    # The item as the API serves it, rendered at write time (see catalog/rendering.py).
    Column("item_json", Text),
    # The catalog version of the transaction that last wrote item_json: item snapshots append the
    # items newer than theirs (catalog/item_snapshot.py). NULL on rows older than the column.
    Column("item_version", BigInteger),
)

catalog_meta = Table(
    "catalog_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# Indexes for the default order, each sort key and the common filters. Every one
# leads with content_type because both endpoints filter on it, and ends with id,
# the tie-break: a descending order (id descending too) is a backward scan.
Index("ix_content_default_reel", content.c.content_type, content.c.outlier_score,
      content.c.view_count, content.c.id)
Index("ix_content_default_post", content.c.content_type, content.c.outlier_score,
      content.c.like_count, content.c.id)
Index("ix_content_views", content.c.content_type, content.c.view_count, content.c.id)
Index("ix_content_likes", content.c.content_type, content.c.like_count, content.c.id)
Index("ix_content_comments", content.c.content_type, content.c.comment_count, content.c.id)
Index("ix_content_date", content.c.content_type, content.c.date_posted, content.c.id)
Index("ix_content_primary_default", content.c.content_type, content.c.primary_category,
      content.c.outlier_score, content.c.view_count, content.c.id)
Index("ix_content_username", content.c.username)
Index("ix_content_item_version", content.c.item_version)
Index("ix_content_profile", content.c.profile_id)
Index("ix_profiles_followers", primary_profiles.c.followers)

#: Secondary indexes of ``content``, dropped and rebuilt around a bulk seed into an empty table.
CONTENT_SECONDARY_INDEXES = [index for index in content.indexes if not index.unique]
