"""The frontend's ITEM shape, for the content views; defined in ``viralspot.schemas.items``."""
from ..schemas.items import display_count, iso_datetime, serialize_item

__all__ = ["display_count", "iso_datetime", "serialize_item"]
