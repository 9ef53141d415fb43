//! Registration tokens: the customer's list, and for its admins and devops the form that
//! creates one — its secret shown once, with an `appsettings.json` ready to copy and the
//! commands that install and start an agent with it — and revocation.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cygnet_proto::v1 as pb;
use cygnet_proto::v1::agent_service_server::AgentService;
use serde::Deserialize;

use super::form::FormErrors;
use super::{Frame, frame, id, try_write, write};
use crate::web::Web;
use crate::web::error::{WebError, render, render_with};
use crate::web::session::{Peer, Session};
use crate::web::view;

pub struct TokenRow {
    pub id: i64,
    pub prefix: String,
    pub description: String,
    pub uses: String,
    pub created: String,
    pub expires: String,
    pub revoked: bool,
}

/// What a new token's page shows once.
pub struct Created {
    pub secret: String,
    pub appsettings: String,
    pub install: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub max_uses: String,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokensPage {
    frame: Frame,
    tokens: Vec<TokenRow>,
    created: Option<Created>,
    may_manage: bool,
    manage_reason: String,
    form: TokenForm,
    errors: FormErrors,
}

async fn page(
    web: &Web,
    session: &Session,
    customer_id: i64,
    form: TokenForm,
    errors: FormErrors,
    created: Option<Created>,
) -> Result<TokensPage, WebError> {
    let frame = frame(web, session, customer_id, "agents").await?;
    let (tokens, _) = every!(
        web.agents,
        list_registration_tokens,
        session,
        ListRegistrationTokensRequest {
            customer_id,
            page_size: 200,
        },
        tokens
    )
    .await?;
    let (may_manage, manage_reason) = frame.allowed(
        &[pb::Role::Admin, pb::Role::Devops],
        "create and revoke registration tokens",
    );
    Ok(TokensPage {
        tokens: tokens
            .into_iter()
            .map(|token| TokenRow {
                id: token.id,
                prefix: token.token_prefix,
                description: token.description,
                uses: if token.max_uses > 0 {
                    format!("{} of {}", token.use_count, token.max_uses)
                } else {
                    token.use_count.to_string()
                },
                created: view::time(token.created_at.as_ref()),
                expires: view::time(token.expires_at.as_ref()),
                revoked: token.revoked_at.is_some(),
            })
            .collect(),
        created,
        may_manage,
        manage_reason,
        form,
        errors,
        frame,
    })
}

pub async fn tokens(
    State(web): State<Web>,
    session: Session,
    Path(customer): Path<String>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    let form = TokenForm {
        max_uses: "0".into(),
        ..TokenForm::default()
    };
    Ok(render(
        &page(
            &web,
            &session,
            customer_id,
            form,
            FormErrors::default(),
            None,
        )
        .await?,
    ))
}

/// The gRPC address an agent on another host would use: the host the browser addressed, on the
/// gRPC port.
fn server_url(web: &Web, headers: &HeaderMap) -> String {
    let host = crate::web::view::addressed_host(headers)
        .map(|host| match host.rsplit_once(':') {
            // Not inside an IPv6 literal's brackets.
            Some((name, port)) if !port.contains(']') => name,
            _ => host,
        })
        .filter(|host| !host.is_empty())
        .unwrap_or("localhost");
    let scheme = if web.grpc_tls { "https" } else { "http" };
    format!("{scheme}://{host}:{}", web.grpc_port)
}

fn created(customer_id: i64, secret: String, server_url: &str) -> Created {
    // Written key by key, in the order of the README's example (serde_json sorts keys).
    let text = |value: &str| serde_json::Value::from(value).to_string();
    let appsettings = format!(
        "{{\n  \"AgentConfiguration\": {{\n    \"CustomerId\": {customer_id},\n    \"AgentUuid\": \"CHANGE-ME-unique-per-host\",\n    \"ServerUrl\": {},\n    \"RegistrationTokenFile\": \"/etc/cygnet/registration-token\",\n    \"Name\": \"CHANGE-ME\",\n    \"Labels\": [\"linux\"],\n    \"WorkDirectory\": \"/var/lib/cygnet-agent/work\",\n    \"StateDirectory\": \"/var/lib/cygnet-agent/state\",\n    \"RunStepsAs\": \"cygnet-steps\"\n  }}\n}}",
        text(server_url)
    );
    let install = format!(
        "sudo install -d -m 0750 /etc/cygnet && printf '%s' '{secret}' | sudo tee /etc/cygnet/registration-token > /dev/null && sudo chmod 0600 /etc/cygnet/registration-token\n\
         # save the appsettings.json above as /etc/cygnet/appsettings.json, then (examples/systemd/cygnet-agent.service):\n\
         sudo systemctl enable --now cygnet-agent"
    );
    Created {
        secret,
        appsettings,
        install,
    }
}

pub async fn create_token(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    headers: HeaderMap,
    Path(customer): Path<String>,
    axum::Form(form): axum::Form<TokenForm>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    session.check_csrf(&form.csrf)?;
    let max_uses = match form.max_uses.trim() {
        "" => Ok(0),
        value => value.parse::<i64>(),
    };
    let Ok(max_uses) = max_uses else {
        let errors = FormErrors::at("max_uses", "max_uses must be a whole number");
        let page = page(&web, &session, customer_id, form, errors, None).await?;
        return Ok(render_with(StatusCode::BAD_REQUEST, &page));
    };
    let api = web.agents.clone();
    let request = session.request(pb::CreateRegistrationTokenRequest {
        customer_id,
        description: form.description.trim().to_owned(),
        max_uses,
        expires_at: None,
    });
    let outcome = try_write(
        &web,
        peer,
        "cygnet.v1.AgentService/CreateRegistrationToken",
        async move { api.create_registration_token(request).await },
    )
    .await?;
    match outcome {
        Ok(response) => {
            let shown = created(customer_id, response.secret, &server_url(&web, &headers));
            let form = TokenForm {
                max_uses: "0".into(),
                ..TokenForm::default()
            };
            let page = page(
                &web,
                &session,
                customer_id,
                form,
                FormErrors::default(),
                Some(shown),
            )
            .await?;
            // The secret is in this answer only: no cache may keep it.
            let mut response = render(&page);
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            Ok(response)
        }
        Err(status) => {
            let (errors, code) = FormErrors::from_status(status, &["description", "max_uses"])?;
            let page = page(&web, &session, customer_id, form, errors, None).await?;
            Ok(render_with(code, &page))
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

pub async fn revoke_token(
    State(web): State<Web>,
    session: Session,
    peer: Peer,
    Path((customer, token)): Path<(String, String)>,
    axum::Form(form): axum::Form<CsrfOnly>,
) -> Result<Response, WebError> {
    let customer_id = id(&customer)?;
    let token_id = id(&token)?;
    session.check_csrf(&form.csrf)?;
    let api = web.agents.clone();
    let request = session.request(pb::RevokeRegistrationTokenRequest {
        customer_id,
        token_id,
    });
    write(
        &web,
        peer,
        "cygnet.v1.AgentService/RevokeRegistrationToken",
        async move { api.revoke_registration_token(request).await },
    )
    .await?;
    Ok(Redirect::to(&format!("/c/{customer_id}/agents/tokens")).into_response())
}
