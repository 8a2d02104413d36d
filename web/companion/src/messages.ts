// Refusals and failures in words a player understands, with what to do.
import type { ApiError, CatalogSKU } from "@savesync/client";
import { formatNumber } from "@savesync/page";

/** "10,000 coins + 120 gems". */
export function formatPrice(price: Record<string, number | undefined>): string {
  const parts = Object.entries(price)
    .filter((e): e is [string, number] => typeof e[1] === "number")
    .map(([c, n]) => `${formatNumber(n)} ${c}`);
  return parts.length > 0 ? parts.join(" + ") : "free";
}

/** Why a purchase was refused, and that nothing was charged (or what to do when that is unknown). */
export function purchaseRefusal(err: ApiError, sku: CatalogSKU | undefined): string {
  const name = sku?.name ?? sku?.sku ?? "this item";
  const d = err.details;
  switch (err.code) {
    case "INSUFFICIENT_FUNDS": {
      const currency = typeof d.currency === "string" ? d.currency : undefined;
      const price = typeof d.price === "number" ? d.price : undefined;
      const balance = typeof d.balance === "number" ? d.balance : undefined;
      if (currency && price !== undefined && balance !== undefined) {
        return `Not enough ${currency} for ${name}: it costs ${formatNumber(price)} ${currency} and you have ${formatNumber(balance)}. Nothing was charged.`;
      }
      return `You cannot afford ${name} right now. Nothing was charged.`;
    }
    case "LIMIT_EXCEEDED":
      return `${name} would take you over a limit of the game (${err.message}). Nothing was charged.`;
    case "NOT_FOUND":
      return `${name} is no longer sold. Nothing was charged.`;
    default:
      return failure(err, `buy ${name}`, "the same purchase is never charged twice");
  }
}

/** Why a write failed; `what` is the action ("change music"), `safe` why retrying is harmless. */
export function failure(err: ApiError, what: string, safe = "it will be applied only once"): string {
  switch (err.code) {
    case "NETWORK_ERROR":
      return `Could not reach the game service to ${what}, so it may not have gone through. Check your connection and try again: ${safe}.`;
    case "UNAVAILABLE":
    case "INTERNAL":
    case "REQUEST_TIMEOUT":
      return `The game service could not ${what} just now. Try again in a moment: ${safe}.`;
    case "RATE_LIMITED":
    case "RESOURCE_EXHAUSTED":
      return `Too many requests in a row. Wait ${retryIn(err)} and try again.`;
    case "UNAUTHENTICATED":
    case "TOKEN_UNAVAILABLE":
      return `Your sign-in has run out. Sign out and in again to ${what}.`;
    case "PERMISSION_DENIED":
      return `You may not ${what}: ${err.message}.`;
    default:
      return `Could not ${what}: ${err.message}.`;
  }
}

/** Why the page cannot start: the API cannot be reached or refused the account. */
export function startFailure(err: ApiError, apiBase: string): string {
  if (err.code === "NETWORK_ERROR") {
    return `Cannot reach the game service at ${apiBase}. It may be down, or it does not accept calls from this page (CORS). Try again in a moment.`;
  }
  return failure(err, "load your save");
}

function retryIn(err: ApiError): string {
  const s = Math.ceil(err.retryAfterSeconds ?? 0);
  if (s <= 1) return "a second";
  return s < 90 ? `${s} seconds` : `${Math.ceil(s / 60)} minutes`;
}

/** A Firebase Auth error in words. */
export function authFailure(code: string, message: string): string {
  switch (code) {
    case "auth/email-already-in-use":
      return "An account with this email exists already. Sign in instead.";
    case "auth/invalid-credential":
    case "auth/wrong-password":
    case "auth/user-not-found":
    case "auth/invalid-login-credentials":
      return "The email or the password is wrong.";
    case "auth/weak-password":
      return "Choose a password of at least 6 characters.";
    case "auth/invalid-email":
    case "auth/missing-email":
      return "Enter a valid email address.";
    case "auth/missing-password":
      return "Enter your password.";
    case "auth/network-request-failed":
      return "Could not reach the sign-in service. Check your connection and try again.";
    case "auth/too-many-requests":
      return "Too many attempts. Wait a minute and try again.";
    case "auth/user-disabled":
      return "This account is disabled.";
    default:
      return `Sign-in failed: ${message}`;
  }
}
