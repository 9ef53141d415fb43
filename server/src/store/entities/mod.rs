//! sea-orm row types, one module per table. Only `store/` sees these.

pub mod api_token;
pub mod customer;
pub mod user;
pub mod user_customer;
