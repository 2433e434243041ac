//! A stand-in service whose only purpose is to pull in and use a typical dependency set.
use axum::{routing::get, Json, Router};
use clap::Parser;
use serde::{Deserialize, Serialize};

#[derive(Parser)]
struct Args {
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    bind: String,
}

#[derive(Serialize, Deserialize)]
struct Health {
    id: uuid::Uuid,
    now: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, thiserror::Error)]
#[error("bad pattern")]
struct BadPattern;

async fn health() -> Json<Health> {
    Json(Health {
        id: uuid::Uuid::new_v4(),
        now: chrono::Utc::now(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let _re = regex::Regex::new(r"^/v\d+/").map_err(|_| BadPattern)?;
    let _client = reqwest::Client::builder().build()?;
    let app = Router::new()
        .route("/health", get(health))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::cors::CorsLayer::permissive());
    let listener = tokio::net::TcpListener::bind(&args.bind).await?;
    tracing::info!(bind = %args.bind, "listening");
    axum::serve(listener, app).await?;
    Ok(())
}
