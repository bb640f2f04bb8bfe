// Shared by both pages: where the gateway is, and errors as sentences a person can act on.
import { ApiError } from "./vendor/canistry-client.js";

/** `?gateway=URL` when the page is served from elsewhere; else the page's own origin
 * (`canistry up` serves this app at /app/). Nav links keep the parameter. */
export function gatewayUrl() {
  document.getElementById("boot")?.remove(); // the modules loaded: the client is there
  const given = new URLSearchParams(location.search).get("gateway");
  for (const link of document.querySelectorAll("header nav a")) {
    if (given) link.href = `${link.getAttribute("href")}?gateway=${encodeURIComponent(given)}`;
  }
  return given || location.origin;
}

function duration(seconds) {
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 90) return `${minutes} min`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

/** What to tell the person about a failed call. */
export function describe(error, gateway) {
  if (error instanceof ApiError) {
    const wait = error.retryAfter != null ? ` Try again in ${duration(error.retryAfter)}.` : "";
    if (error.status === 429 && error.code === "daily-limit-exceeded") {
      return `You have reached today's limit: ${error.detail}.${wait}`;
    }
    if (error.status === 429) return `Too many requests right now.${wait}`;
    if (error.status === 503) return `The service is busy or partly down (${error.title.toLowerCase()}).${wait || " Try again shortly."}`;
    return `${error.title}: ${error.detail}`;
  }
  if (error instanceof TypeError) {
    return `Cannot reach the gateway at ${gateway}. Is it running, and does it allow this page's origin (canistry up --cors-origin ${location.origin})?`;
  }
  return String(error?.message ?? error);
}

export function show(id, visible = true) {
  document.getElementById(id).classList.toggle("hidden", !visible);
}

export function say(text) {
  const box = document.getElementById("message");
  box.textContent = text ?? "";
  box.classList.toggle("hidden", !text);
}
