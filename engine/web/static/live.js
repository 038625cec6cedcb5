/* Phoney dashboard: what every page shares.
 *
 * - Phoney.config: the page's settings, read from the JSON data block #phoney-config.
 * - Phoney.api(path, options): fetch JSON from the server; POSTs carry the CSRF header.
 * - Phoney.el(tag, props, ...children): DOM building with textContent only. Call data is never
 *   parsed as HTML, so a caller who says "<script>" is shown, not run.
 * - Phoney.live({call, onEvent, onResync}): the live events of all calls or of one call, from
 *   Pusher when the server says it is configured (and pusher-js loaded), else from the server-sent
 *   events at /api/events. Events arrive in id order, each once: ids at or below the last one
 *   handled are dropped, so a snapshot and the stream after it can overlap safely.
 * - Phoney.shown(element, event): marks when a live event reached the page (data-shown-at, in
 *   epoch milliseconds, and window.__phoneyLastEventAt), which the browser tests read to measure
 *   the delay from a webhook to the screen.
 *
 * No inline scripts or event handler attributes anywhere (addEventListener only), so a strict
 * Content-Security-Policy can be added without touching the pages.
 */
(function () {
  "use strict";

  var EVENT_NAMES = [
    "call.start", "call.transcript", "call.say", "call.response.partial", "call.response",
    "call.node", "call.transfer", "call.error", "call.timing", "call.recording", "call.end",
    "call.test", "call.relay", "call.interrupt", "call.sentiment", "call.analysis"
  ];

  function readConfig() {
    var block = document.getElementById("phoney-config");
    if (!block) { return {}; }
    try { return JSON.parse(block.textContent || "{}"); } catch (error) { return {}; }
  }

  var config = readConfig();
  // Seconds to add to the browser's clock to get the server's (the calls' clock); refined by
  // every live event, whose `at` the server stamped a moment before it arrived.
  var clockOffset = typeof config.server_time === "number" ? config.server_time - Date.now() / 1000 : 0;

  function serverNow() { return Date.now() / 1000 + clockOffset; }

  function noteServerTime(at) {
    if (typeof at !== "number") { return; }
    var estimate = at - Date.now() / 1000;
    // The event was stamped before it arrived: the largest estimate is the closest one.
    if (estimate > clockOffset) { clockOffset = estimate; }
  }

  function el(tag, props) {
    var node = document.createElement(tag);
    var key;
    props = props || {};
    for (key in props) {
      if (!Object.prototype.hasOwnProperty.call(props, key) || props[key] === undefined ||
          props[key] === null) { continue; }
      if (key === "text") { node.textContent = String(props[key]); }
      else if (key === "className") { node.className = props[key]; }
      else if (key === "dataset") { Object.assign(node.dataset, props[key]); }
      else { node.setAttribute(key, String(props[key])); }
    }
    for (var index = 2; index < arguments.length; index++) {
      var child = arguments[index];
      if (child === null || child === undefined || child === false) { continue; }
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) { node.removeChild(node.firstChild); }
  }

  function formatDuration(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds) || seconds < 0) { return "–"; }
    var total = Math.floor(seconds);
    var hours = Math.floor(total / 3600);
    var minutes = Math.floor((total % 3600) / 60);
    var secs = total % 60;
    var mm = hours ? String(minutes).padStart(2, "0") : String(minutes);
    return (hours ? hours + ":" : "") + mm + ":" + String(secs).padStart(2, "0");
  }

  function formatTime(epochSeconds) {
    if (typeof epochSeconds !== "number") { return ""; }
    var date = new Date(epochSeconds * 1000);
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  // "Dec 8, 09:30" (the year too when it is not this one), in the browser's time zone.
  function formatDateTime(epochSeconds) {
    if (typeof epochSeconds !== "number") { return ""; }
    var date = new Date(epochSeconds * 1000);
    var options = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
    if (date.getFullYear() !== new Date().getFullYear()) { options.year = "numeric"; }
    return date.toLocaleString([], options);
  }

  function formatSeconds(value) {
    if (typeof value !== "number" || !isFinite(value)) { return null; }
    return value < 1 ? Math.round(value * 1000) + " ms" : value.toFixed(2) + " s";
  }

  function ApiError(status, message, body) {
    this.name = "ApiError";
    this.status = status;
    this.message = message;
    this.body = body;
  }
  ApiError.prototype = Object.create(Error.prototype);

  function api(path, options) {
    options = options || {};
    var init = { method: options.method || "GET", credentials: "same-origin",
                 headers: { "Accept": "application/json" } };
    if (init.method !== "GET") {
      init.headers["X-CSRF-Token"] = config.csrf_token || "";
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body || {});
    }
    return fetch(path, init).then(function (response) {
      if (response.status === 401 && !options.allow401) {
        window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
      }
      return response.text().then(function (text) {
        var body = null;
        try { body = text ? JSON.parse(text) : null; } catch (error) { body = null; }
        if (!response.ok) {
          var message = (body && body.error) || ("HTTP " + response.status);
          throw new ApiError(response.status, message, body);
        }
        return body;
      });
    });
  }

  function shown(element, event) {
    var at = performance.timeOrigin + performance.now();
    if (element) { element.dataset.shownAt = String(at); }
    window.__phoneyLastEventAt = at;
    if (event && typeof event.id === "number") { window.__phoneyLastEventId = event.id; }
  }

  // -- live status indicator --------------------------------------------------------------------

  function setStatus(state, text) {
    var node = document.getElementById("live-status");
    if (!node) { return; }
    node.dataset.state = state;
    node.textContent = text;
  }

  // -- feeds ------------------------------------------------------------------------------------

  function Feed(options) {
    this.options = options;
    this.lastId = null;  // null until start(): events before then wait in `buffer`
    this.buffer = [];
  }

  Feed.prototype.receive = function (event) {
    if (!event || typeof event !== "object" || typeof event.id !== "number") { return; }
    if (this.lastId === null) { this.buffer.push(event); return; }
    if (event.id <= this.lastId) { return; }
    this.lastId = event.id;
    noteServerTime(event.at);
    try { this.options.onEvent(event, false); }
    catch (error) { if (window.console) { console.error("phoney: event handler failed", error); } }
  };

  Feed.prototype.flush = function (after) {
    this.lastId = typeof after === "number" ? after : 0;
    // From here on every event reaches the page live; tests wait for this mark before acting.
    document.documentElement.dataset.liveFrom = String(this.lastId);
    var waiting = this.buffer;
    this.buffer = [];
    waiting.sort(function (a, b) { return a.id - b.id; });
    for (var index = 0; index < waiting.length; index++) { this.receive(waiting[index]); }
  };

  // A refused stream (signed out, server gone, or over the server's cap of streams: 429/503)
  // is retried after 3 s, then twice as long each time up to a minute, with some jitter, so
  // many tabs refused together do not come back together; an open stream starts it over.
  var RETRY_FIRST_MS = 3000;
  var RETRY_MAX_MS = 60000;

  // Server-sent events: /api/events[?call=SID]&after=ID. EventSource resumes by itself with the
  // Last-Event-ID header after a dropped connection or the end of a stream's lifetime.
  function SseFeed(options) {
    Feed.call(this, options);
    this.source = null;
    this.ready = Promise.resolve();
    this.retryTimer = null;
    this.retryDelay = RETRY_FIRST_MS;
  }
  SseFeed.prototype = Object.create(Feed.prototype);

  SseFeed.prototype.start = function (after) {
    this.flush(after);
    this.open();
  };

  SseFeed.prototype.open = function () {
    var self = this;
    var params = new URLSearchParams();
    if (this.options.call) { params.set("call", this.options.call); }
    params.set("after", String(this.lastId || 0));
    var source = new EventSource((config.sse_url || "/api/events") + "?" + params.toString());
    this.source = source;
    var handle = function (message) {
      var event;
      try { event = JSON.parse(message.data); } catch (error) { return; }
      self.receive(event);
    };
    EVENT_NAMES.forEach(function (name) { source.addEventListener(name, handle); });
    source.addEventListener("message", handle);
    source.addEventListener("open", function () {
      self.retryDelay = RETRY_FIRST_MS;
      setStatus("live", "live · server-sent events");
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        // Refused (signed out, server gone, over its cap of streams): EventSource gives up,
        // so try again ourselves.
        setStatus("down", "disconnected · retrying");
        self.reopenLater();
      } else {
        setStatus("reconnecting", "reconnecting…");
      }
    });
  };

  SseFeed.prototype.reopenLater = function () {
    var self = this;
    if (this.retryTimer) { return; }
    var delay = this.retryDelay * (0.75 + Math.random() * 0.5);
    this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
    this.retryTimer = window.setTimeout(function () {
      self.retryTimer = null;
      api("/api/session").then(function () { self.open(); }, function () { self.reopenLater(); });
    }, delay);
  };

  SseFeed.prototype.close = function () {
    if (this.source) { this.source.close(); }
  };

  // Pusher Channels: the channel of all calls, or of one call. Pusher does not replay what was
  // missed while disconnected, so a reconnection asks the page to load its snapshot again.
  function PusherFeed(options) {
    Feed.call(this, options);
    var self = this;
    var settings = config.pusher;
    var clientOptions = { cluster: settings.cluster, forceTLS: settings.force_tls !== false };
    if (settings.ws_host) {
      clientOptions.wsHost = settings.ws_host;
      if (settings.ws_port) { clientOptions.wsPort = settings.ws_port; clientOptions.wssPort = settings.ws_port; }
      clientOptions.enabledTransports = ["ws", "wss"];
    }
    if (settings.auth_endpoint) {
      clientOptions.channelAuthorization = {
        endpoint: settings.auth_endpoint, transport: "ajax",
        headers: { "X-CSRF-Token": config.csrf_token || "" }
      };
    }
    this.pusher = new window.Pusher(settings.key, clientOptions);
    var name = options.call ? settings.call_channel_prefix + options.call : settings.all_calls_channel;
    this.channel = this.pusher.subscribe(name);
    this.channel.bind_global(function (eventName, data) {
      if (eventName.indexOf("pusher:") === 0 || eventName.indexOf("pusher_internal:") === 0) { return; }
      self.receive(typeof data === "string" ? safeParse(data) : data);
    });
    var wasConnected = false;
    this.pusher.connection.bind("state_change", function (states) {
      if (states.current === "connected") {
        setStatus("live", "live · Pusher");
        if (wasConnected && self.lastId !== null && self.options.onResync) { self.options.onResync(); }
        wasConnected = true;
      } else if (states.current === "connecting" || states.current === "unavailable") {
        setStatus("reconnecting", "reconnecting…");
      } else if (states.current === "failed" || states.current === "disconnected") {
        setStatus("down", "disconnected");
      }
    });
    this.ready = new Promise(function (resolve) {
      var done = function () { resolve(); };
      self.channel.bind("pusher:subscription_succeeded", done);
      self.channel.bind("pusher:subscription_error", function (status) {
        setStatus("down", "Pusher refused the subscription");
        if (window.console) { console.error("phoney: subscription refused", status); }
        done();
      });
      window.setTimeout(done, 5000);  // never hold the page on a slow subscription
    });
  }
  PusherFeed.prototype = Object.create(Feed.prototype);

  PusherFeed.prototype.start = function (after) { this.flush(after); };
  PusherFeed.prototype.close = function () { this.pusher.disconnect(); };

  function safeParse(text) {
    try { return JSON.parse(text); } catch (error) { return null; }
  }

  function live(options) {
    if (config.transport === "pusher" && config.pusher) {
      if (typeof window.Pusher === "function") {
        try { return new PusherFeed(options); }
        catch (error) { if (window.console) { console.error("phoney: Pusher failed; using server-sent events", error); } }
      } else if (window.console) {
        console.warn("phoney: pusher-js is not loaded (see README, Dashboard); using server-sent events");
      }
    }
    return new SseFeed(options);
  }

  window.Phoney = {
    config: config, api: api, ApiError: ApiError, el: el, clear: clear, live: live,
    shown: shown, serverNow: serverNow, noteServerTime: noteServerTime,
    formatDuration: formatDuration, formatTime: formatTime, formatDateTime: formatDateTime, formatSeconds: formatSeconds,
    EVENT_NAMES: EVENT_NAMES
  };
})();
