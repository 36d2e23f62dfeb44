"""Bare extension instances, bound to an app in ``create_app``; views import them from here."""
from .api import Api
from .catalog.database import Catalog
from .random_feed_extension import RandomFeedExtension
from .rate_limits import RateLimits
from .store import SessionStore

api = Api()
rate_limits = RateLimits()
session_store = SessionStore()
catalog = Catalog()
random_feeds = RandomFeedExtension()
