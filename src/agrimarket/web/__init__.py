"""The farmer's web app: server-rendered pages for a phone (see ``routes``)."""
