//! A form's refusal shown next to the field it names: the handler's `BadRequest` field (the
//! structured details every INVALID_ARGUMENT carries) picks the input; refusals about no field
//! (a role, a state, a quota) show above the form. The page is rendered again with what the
//! user typed, so nothing is lost.

use axum::http::StatusCode;
use tonic::Code;
use tonic_types::StatusExt;

use crate::web::error::WebError;

/// The refusal a form shows, or none.
#[derive(Debug, Default, Clone)]
pub struct FormErrors {
    /// The request field the refusal names (`name`, `steps[0].name`); empty for the form as a
    /// whole.
    field: String,
    message: String,
}

/// The form input a request field belongs to: itself, or the input that holds a list or a
/// message of them (`steps` for `steps[2].command`, `agent_selector` for `agent_selector.labels[0]`).
fn input_of(field: &str, inputs: &[&str]) -> Option<String> {
    inputs
        .iter()
        .find(|input| {
            field == **input
                || field
                    .strip_prefix(**input)
                    .is_some_and(|rest| rest.starts_with('[') || rest.starts_with('.'))
        })
        .map(|input| (*input).to_owned())
}

impl FormErrors {
    /// The refusal of `status`, for a form whose inputs are `fields` (request field names);
    /// statuses a form cannot show (sign in again, not found, server faults) stay page errors.
    pub fn from_status(
        status: tonic::Status,
        fields: &[&str],
    ) -> Result<(Self, StatusCode), WebError> {
        let http = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            _ => return Err(status.into()),
        };
        let field = status
            .get_error_details()
            .bad_request()
            .and_then(|request| request.field_violations.first())
            .and_then(|violation| input_of(&violation.field, fields))
            .unwrap_or_default();
        Ok((
            FormErrors {
                field,
                message: status.message().to_owned(),
            },
            http,
        ))
    }

    /// A refusal the page itself found in the input of `field`.
    pub fn at(field: &str, message: impl Into<String>) -> Self {
        FormErrors {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// The message for the input of `field`, or "".
    pub fn on(&self, field: &str) -> &str {
        if !self.field.is_empty() && self.field == field {
            &self.message
        } else {
            ""
        }
    }

    /// The message about the form as a whole, or "".
    pub fn general(&self) -> &str {
        if self.field.is_empty() {
            &self.message
        } else {
            ""
        }
    }
}

/// `NAME=value` lines (blank ones skipped) as a map; a line without `=` is refused at `field`,
/// saying how to write it (`shape`, e.g. "NAME=value").
pub fn name_value_lines(
    text: &str,
    field: &str,
    shape: &str,
) -> Result<std::collections::HashMap<String, String>, FormErrors> {
    let mut pairs = std::collections::HashMap::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(FormErrors::at(
                field,
                format!("{field} line {}: write it as {shape}", number + 1),
            ));
        };
        pairs.insert(name.trim().to_owned(), value.trim().to_owned());
    }
    Ok(pairs)
}

/// A form body read as its fields in order, repeated names kept (checkboxes that share a name);
/// `axum::Form` (serde_urlencoded) reads no repeated keys into a list.
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, or "".
    pub fn one(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .collect()
    }

    /// Whether a checkbox named `name` was checked.
    pub fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(key, _)| key == name)
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Fields {
    type Rejection = WebError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, WebError> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|_| WebError::Page(StatusCode::BAD_REQUEST, "unreadable form".into()))?;
        Ok(Fields(
            url::form_urlencoded::parse(&bytes)
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect(),
        ))
    }
}
