//! `FailingClient<C>`: fails the k-th call of an operation (owned by the engine work; placeholder).
