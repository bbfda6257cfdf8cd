"""The `/pay` router of WalletFunction (SPEC §5): the default-mode top-up page behind a signed link,
the Stripe Checkout hand-off and its result pages. The link names (paywall, environment, user) and
cannot be altered; the amount forms carry a CSRF token bound to the link (paywalls.http.csrf). Rules are in
paywalls.billing.topup; this module parses, calls them and renders."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from paywalls.billing import topup
from paywalls.http import csrf, pages
from paywalls.http.page_http import BaseUrl, CsrfGuard, Form, PageRoute, html, message, redirect
from paywalls.infra import links

router = APIRouter(route_class=PageRoute)


# Literal paths first: a token always contains a dot, so it never reads as "success" or "cancel".
@router.get("/pay/success")
def success() -> HTMLResponse:
    return message(
        "Payment received",
        "Thank you! Your balance is updated as soon as the payment is confirmed, usually within seconds. "
        "You can close this page and return to the app.",
    )


@router.get("/pay/cancel")
def cancel(base: BaseUrl, link: str | None = None) -> HTMLResponse:
    back = None
    if link:
        try:
            links.verify(link, "topup")
            back = ("Choose another amount", f"{base}/pay/{link}")
        except links.InvalidLink:
            pass  # not ours: no way back offered, the page itself is still true
    return message("Payment canceled", "Nothing was charged.", back)


@router.get("/pay/{token}")
def topup_page(token: str, base: BaseUrl, guard: CsrfGuard) -> HTMLResponse:
    link = topup.open_link(token)
    simulate = link.method == "simulate"
    view = pages.TopupView(
        app_name=link.paywall.name,
        description=link.paywall.description,
        icon_url=link.paywall.icon_url,
        user=link.user,
        environment=link.environment,
        balance=link.balance(),
        currency=link.paywall.currency,
        amounts=link.presets,
        method=link.method,
        action_url=f"{base}/_dev/pay/{token}/simulate" if simulate else f"{base}/pay/{token}/checkout",
        csrf_token=guard.token(token),
    )
    return html(pages.topup_page(view), csrf=guard)


@router.post("/pay/{token}/checkout")
def checkout(token: str, form: Form, base: BaseUrl, guard: CsrfGuard) -> Response:
    """Create a Checkout Session for one of the page's presets and send the browser to Stripe."""
    link = topup.open_link(token)
    try:
        guard.require(form, token)
    except csrf.Rejected:
        return message(
            "Please reload the page",
            "This form expired or did not come from this page. Reload the top-up page and try again.",
            ("Back to the top-up page", f"{base}/pay/{token}"),
            status=403,
        )
    return redirect(topup.start_checkout(link, form.get("amount"), base))


@router.api_route("/pay/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def not_found() -> HTMLResponse:
    return message("Not found", "This page does not exist.", status=404)
