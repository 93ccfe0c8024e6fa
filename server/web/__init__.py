"""The faces of the manor served by the server itself: /play for players, /console for
operators, their static files and the JavaScript client (no CDN: they work offline)."""
