"""Errors come in OpenAI's shape, so the SDKs raise their usual exceptions."""

import os

import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ["PAYWALLS_BASE_URL"], api_key=os.environ["PAYWALLS_API_KEY"], max_retries=0)

try:
    client.chat.completions.create(model="gpt-unpriced", user="alice", messages=[{"role": "user", "content": "hi"}])
except openai.NotFoundError as exc:  # 404: the model is not in this paywall's price table
    print(exc.status_code, exc.code)  # 404 model_not_found
except openai.APIStatusError as exc:  # any other error status: exc.code says which (see the FAQ)
    print(exc.status_code, exc.code, exc.message)

try:
    OpenAI(base_url=os.environ["PAYWALLS_BASE_URL"], api_key="sk-paywalls-wrong").models.list()
except openai.AuthenticationError as exc:  # 401: unknown or revoked key
    print(exc.status_code, exc.code)  # 401 invalid_api_key
