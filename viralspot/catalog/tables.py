"""SQLAlchemy Core tables of the catalog: ``content`` and ``primary_profiles``.

``content.id`` is the dense integer key the random feed permutes; it never changes once assigned.
``catalog_meta`` holds the catalog version (bumped by every write) and epoch.
"""
from sqlalchemy import (JSON, BigInteger, Boolean, Column, DateTime, Float, ForeignKey, Index, Integer,
                        MetaData, String, Table, Text, func, literal_column)

metadata = MetaData()

#: The largest ``content.id``: random feeds and session stores hold keys in 32 bits.
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
    # The catalog version of the transaction that last wrote item_json (catalog/item_snapshot.py).
    Column("item_version", BigInteger),
    # (likes + comments) x 100 / views, and / the author's followers: NULL without views or
    # followers. Derived at write time with item_json (rendering.py), so their sorts read an index.
    Column("content_engagement_rate", Float),
    Column("account_engagement_rate", Float),
)

#: Columns a writer derives from the row and its author's profile (rendering.py), never given directly.
DERIVED_COLUMNS = ("item_json", "item_version", "content_engagement_rate", "account_engagement_rate")

catalog_meta = Table(
    "catalog_meta",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# Indexes for the default order, each sort key and the common filters: content_type first (both
# endpoints filter on it), id last (the tie-break: a descending order is a backward scan).
_c = content.c
Index("ix_content_default_reel", _c.content_type, _c.outlier_score, _c.view_count, _c.id)
Index("ix_content_default_post", _c.content_type, _c.outlier_score, _c.like_count, _c.id)
Index("ix_content_views", _c.content_type, _c.view_count, _c.id)
Index("ix_content_likes", _c.content_type, _c.like_count, _c.id)
Index("ix_content_comments", _c.content_type, _c.comment_count, _c.id)
Index("ix_content_date", _c.content_type, _c.date_posted, _c.id)
Index("ix_content_primary_default", _c.content_type, _c.primary_category, _c.outlier_score, _c.view_count, _c.id)
Index("ix_content_username", _c.username)
Index("ix_content_item_version", _c.item_version)
Index("ix_content_profile", _c.profile_id)


def rate_order_key(rate: Column):
    """A rate's sort key, NULL as -1 (below every rate): ``DESC`` is "nulls last" on both databases by one
    backward index scan (PostgreSQL puts NULLs first there). A literal, not a bound -1: the index is on
    this expression, and a query uses it only when its expression is the same."""
    return func.coalesce(rate, literal_column("-1.0"))


Index("ix_content_content_engagement", _c.content_type, rate_order_key(_c.content_engagement_rate), _c.id)
Index("ix_content_account_engagement", _c.content_type, rate_order_key(_c.account_engagement_rate), _c.id)
Index("ix_profiles_followers", primary_profiles.c.followers)

#: Secondary indexes of ``content``, dropped and rebuilt around a bulk seed into an empty table.
CONTENT_SECONDARY_INDEXES = [index for index in content.indexes if not index.unique]
