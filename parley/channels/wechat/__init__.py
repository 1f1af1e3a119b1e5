"""WeChat Official Account channel: crypto, hardened XML, API client and the adapter."""
