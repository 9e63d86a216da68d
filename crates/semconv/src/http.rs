//! HTTP, URL, network and client keys for the gateway's inbound SERVER span.
//!
//! These come from the stable HTTP conventions of the same release. The pinned GenAI YAML
//! model in `../shared/semconv-v1.41.0/` does not contain them, so they are not checked
//! against it; their names have been stable since HTTP semconv 1.23.

consts! {
    /// `GET`, `POST`, … (`_OTHER` for unknown methods).
    REQUEST_METHOD = "http.request.method";
    /// The original method when it was not a known one.
    REQUEST_METHOD_ORIGINAL = "http.request.method_original";
    /// The response status code.
    RESPONSE_STATUS_CODE = "http.response.status_code";
    /// The matched route template.
    ROUTE = "http.route";
    /// Request body size in bytes.
    REQUEST_BODY_SIZE = "http.request.body.size";
    /// Response body size in bytes.
    RESPONSE_BODY_SIZE = "http.response.body.size";
    /// The path of the request URL.
    URL_PATH = "url.path";
    /// The query of the request URL (without `?`).
    URL_QUERY = "url.query";
    /// `http` or `https`.
    URL_SCHEME = "url.scheme";
    /// The full URL (client spans).
    URL_FULL = "url.full";
    /// The address of the client.
    CLIENT_ADDRESS = "client.address";
    /// The port of the client.
    CLIENT_PORT = "client.port";
    /// `http`.
    NETWORK_PROTOCOL_NAME = "network.protocol.name";
    /// `1.1`, `2`.
    NETWORK_PROTOCOL_VERSION = "network.protocol.version";
    /// The peer's address.
    NETWORK_PEER_ADDRESS = "network.peer.address";
    /// The peer's port.
    NETWORK_PEER_PORT = "network.peer.port";
    /// The `User-Agent` header.
    USER_AGENT_ORIGINAL = "user_agent.original";
    /// Prefix of captured request headers: `http.request.header.<lowercase name>`.
    REQUEST_HEADER_PREFIX = "http.request.header.";
    /// Prefix of captured response headers.
    RESPONSE_HEADER_PREFIX = "http.response.header.";
}
