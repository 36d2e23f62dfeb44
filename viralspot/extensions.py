"""Bare extension instances, bound to an app in ``create_app``; views import them from here."""
from .catalog.database import Catalog
from .random_feed_extension import RandomFeedExtension
from .store import SessionStore

session_store = SessionStore()
catalog = Catalog()
random_feeds = RandomFeedExtension()
