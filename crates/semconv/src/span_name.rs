//! How span names are formed.

/// The GenAI inference span name: `{gen_ai.operation.name} {gen_ai.request.model}`, or the
/// operation alone when the model is unknown.
///
/// ```
/// use inferscope_semconv::span_name;
/// assert_eq!(span_name::inference("chat", Some("tiny-llama")), "chat tiny-llama");
/// assert_eq!(span_name::inference("embeddings", None), "embeddings");
/// ```
pub fn inference(operation: &str, model: Option<&str>) -> String {
    match model {
        Some(model) if !model.is_empty() => {
            let mut name = String::with_capacity(operation.len() + 1 + model.len());
            name.push_str(operation);
            name.push(' ');
            name.push_str(model);
            name
        }
        _ => operation.to_owned(),
    }
}

/// The HTTP server span name: `{method} {route}` when the route is known, else `{method}`.
///
/// ```
/// use inferscope_semconv::span_name;
/// assert_eq!(span_name::http_server("POST", Some("/v1/chat/completions")), "POST /v1/chat/completions");
/// assert_eq!(span_name::http_server("GET", None), "GET");
/// ```
pub fn http_server(method: &str, route: Option<&str>) -> String {
    match route {
        Some(route) => format!("{method} {route}"),
        None => method.to_owned(),
    }
}
