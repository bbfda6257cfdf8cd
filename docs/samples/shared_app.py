"""Shared mode, from the app's side: is this user connected? If not, send them the link."""

import os

import httpx

api = httpx.Client(
    base_url=os.environ["PAYWALLS_BASE_URL"], headers={"Authorization": f"Bearer {os.environ['PAYWALLS_API_KEY']}"}
)

status = api.get("/user/connect", params={"user": "sam"}).raise_for_status().json()
if status["connected"]:
    # What the app may know: its own allowance (the cap left), never the person's wallet balance.
    print("connected; cap remaining:", status["connectedUser"]["capRemaining"])
else:
    print("ask sam to authorize:", status["url"])

# Later, to let the person (or your app) end the connection:
# api.get("/user/disconnect", params={"user": "sam"})
