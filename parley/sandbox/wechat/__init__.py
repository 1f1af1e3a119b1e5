"""A simulator of the WeChat Official Account platform: API, signed/encrypted pushes, a phone page."""
