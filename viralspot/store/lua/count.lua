-- count: sessions used within the last TTL (server time).  KEYS: index.  ARGV: ttl_ms
return redis.call('ZCOUNT', KEYS[1], after(server_ms() - tonumber(ARGV[1])), '+inf')
