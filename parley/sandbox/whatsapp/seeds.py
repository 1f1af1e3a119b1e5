"""Templates every simulated account starts with, already approved.

``hello_world`` mirrors the sample template Meta puts in every new WhatsApp
Business account; the others exercise parameters and quick-reply buttons.
"""

from __future__ import annotations

from typing import Any

SEED_TEMPLATES: list[dict[str, Any]] = [
    {
        "name": "hello_world",
        "language": "en_US",
        "category": "UTILITY",
        "status": "APPROVED",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Hello World"},
            {
                "type": "BODY",
                "text": "Welcome and congratulations!! This message demonstrates your ability to send a WhatsApp "
                "message notification from the Cloud API, hosted by Meta. Thank you for taking the time to test with us.",
            },
            {"type": "FOOTER", "text": "WhatsApp Business Platform sample message"},
        ],
    },
    {
        "name": "order_update",
        "language": "en_US",
        "category": "UTILITY",
        "status": "APPROVED",
        "components": [
            {
                "type": "BODY",
                "text": "Hi {{1}}, your order {{2}} is now {{3}}.",
                "example": {"body_text": [["Ana", "A-1001", "on its way"]]},
            },
            {"type": "FOOTER", "text": "Reply to talk to us"},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Talk to an agent"},
                    {"type": "QUICK_REPLY", "text": "All good, thanks"},
                ],
            },
        ],
    },
    {
        "name": "seasonal_offer",
        "language": "en_US",
        "category": "MARKETING",
        "status": "APPROVED",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Our {{1}} is on!"},
            {
                "type": "BODY",
                "text": "Use code {{1}} before {{2}} to get {{3}} off.",
                "example": {"body_text": [["FALL25", "Sunday", "25%"]]},
            },
            {"type": "FOOTER", "text": "Not interested? Tap Stop promotions"},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop promotions"}]},
        ],
    },
]
