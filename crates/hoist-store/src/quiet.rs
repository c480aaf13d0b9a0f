//! Keeps s3s's own debug and trace logs away from the application's subscriber: s3s 0.14 logs
//! every request whole at debug (`debug!(?req)`: pre-signed URLs with their `X-Amz-Signature`
//! and `X-Amz-Credential`, `Authorization` headers), the signature it expected when one does
//! not match, POST form fields (policy and signature) and the string to sign. s3s has no option
//! to redact them and the store cannot rewrite a request before s3s checks its signature, so
//! calls into s3s run under [`WithoutS3sDebug`]: s3s's events and spans below WARN are dropped,
//! its warnings and errors pass, and everything else (the store's own logs) goes to the
//! subscriber that was the default when the store was built, as it would have.

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};

/// A subscriber that forwards to another one, except s3s's events and spans below WARN.
#[derive(Debug)]
pub(crate) struct WithoutS3sDebug {
    inner: Dispatch,
    max_level: LevelFilter,
}

impl WithoutS3sDebug {
    /// A dispatcher wrapping the current default one. Made once per store: making a
    /// [`Dispatch`] re-registers every callsite.
    pub(crate) fn around_default() -> Dispatch {
        let inner = tracing::dispatcher::get_default(Dispatch::clone);
        Dispatch::new(Self { inner, max_level: LevelFilter::current() })
    }
}

/// Whether `meta` is an s3s event or span below WARN.
fn dropped(meta: &Metadata<'_>) -> bool {
    *meta.level() > Level::WARN && (meta.target() == "s3s" || meta.target().starts_with("s3s::"))
}

impl Subscriber for WithoutS3sDebug {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if dropped(meta) { Interest::never() } else { self.inner.register_callsite(meta) }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max_level)
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        !dropped(meta) && self.inner.enabled(meta)
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner.record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner.record_follows_from(span, follows);
    }

    fn event(&self, event: &Event<'_>) {
        self.inner.event(event);
    }

    fn enter(&self, span: &Id) {
        self.inner.enter(span);
    }

    fn exit(&self, span: &Id) {
        self.inner.exit(span);
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }
}
