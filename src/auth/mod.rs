//! Authentication: password hashing, tokens, and the layer that checks them.
//!
//! Passwords are kept only as argon2id hashes and hashed off the async
//! runtime. Tokens are PASETO v4.local (encrypted and authenticated) with an
//! expiry. The layer verifies the token once per request and hands the
//! handlers a typed [`crate::domain::UserId`].

pub mod layer;
pub mod limit;
pub mod password;
pub mod token;

pub use layer::AuthLayer;
pub use token::TokenKeys;
