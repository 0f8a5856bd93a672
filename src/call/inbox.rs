//! A call's inbox: the one channel its task receives every event on (requests from the
//! SBC, client transaction outcomes, stray responses), from any number of senders.
//!
//! A call holds its inbox for its whole life, so the inbox is sized for the common case
//! of an established call with nothing to read: one small shared allocation (a lock, an
//! event queue and a [`Notify`]) and no buffer while the queue is empty. A tokio mpsc
//! channel costs about 800 bytes per call instead (its cache-padded state and a first
//! block of 32 slots), which at tens of thousands of calls is a large share of a call.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Creates an inbox: the sending side (cloneable) and the one receiving side.
pub fn inbox<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            items: VecDeque::new(),
            closed: false,
        }),
        notify: Notify::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    queue: Mutex<Queue<T>>,
    /// Wakes the receiver; a notification sent while it is not waiting is kept (one
    /// permit), so an item queued between its check and its wait is not missed.
    notify: Notify,
}

struct Queue<T> {
    items: VecDeque<T>,
    /// The receiver is gone: sends fail and give the item back.
    closed: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Queue<T>> {
        // Push, pop and close leave the queue consistent even if a panic poisoned it.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side of an inbox. Sending never waits.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("inbox::Sender")
    }
}

impl<T> Sender<T> {
    /// Queues `item` for the receiver; gives it back once the receiver is gone, so the
    /// caller can still answer what it carries (a transaction, for instance).
    pub fn send(&self, item: T) -> Result<(), T> {
        {
            let mut q = self.shared.lock();
            if q.closed {
                return Err(item);
            }
            q.items.push_back(item);
        }
        self.shared.notify.notify_one();
        Ok(())
    }
}

/// The receiving side of an inbox. Dropping it closes the inbox and drops what is queued.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("inbox::Receiver")
    }
}

impl<T> Receiver<T> {
    /// The next item, in sending order; waits until there is one. Cancel-safe: an item
    /// leaves the queue only when `recv` returns it, so it can be used in `select!`.
    ///
    /// Never ends on its own: a call keeps a sender of its own for its client
    /// transactions, so its inbox always has a sender.
    pub async fn recv(&mut self) -> T {
        loop {
            if let Some(item) = self.try_recv() {
                return item;
            }
            self.shared.notify.notified().await;
        }
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        let mut q = self.shared.lock();
        let item = q.items.pop_front();
        if q.items.is_empty() && q.items.capacity() > 0 {
            // An idle call keeps no buffer: events come a few at a time, rarely.
            q.items = VecDeque::new();
        }
        item
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let left = {
            let mut q = self.shared.lock();
            q.closed = true;
            std::mem::take(&mut q.items)
        };
        // Dropped outside the lock: an item's own drop may send somewhere.
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn items_arrive_in_order_from_every_sender() {
        let (tx, mut rx) = inbox();
        let tx2 = tx.clone();
        tx.send(1).unwrap();
        tx2.send(2).unwrap();
        tx.send(3).unwrap();
        assert_eq!(rx.recv().await, 1);
        assert_eq!(rx.recv().await, 2);
        assert_eq!(rx.recv().await, 3);
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_on_send() {
        let (tx, mut rx) = inbox();
        let waiter = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.send("event").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert_eq!(got.unwrap().unwrap(), "event");
    }

    #[tokio::test(start_paused = true)]
    async fn recv_is_cancel_safe_in_select() {
        let (tx, mut rx) = inbox();
        // A recv that loses a select must not lose the item sent meanwhile.
        tokio::select! {
            _ = rx.recv() => panic!("nothing was sent yet"),
            _ = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
        tx.send(7).unwrap();
        tokio::select! {
            biased;
            _ = tokio::time::sleep(Duration::from_millis(10)) => panic!("the item was lost"),
            v = rx.recv() => assert_eq!(v, 7),
        }
    }

    #[test]
    fn sends_fail_once_the_receiver_is_gone_and_give_the_item_back() {
        let (tx, rx) = inbox();
        tx.send(String::from("queued")).unwrap();
        drop(rx);
        assert_eq!(tx.send(String::from("late")), Err(String::from("late")));
    }

    #[test]
    fn an_empty_inbox_keeps_no_buffer() {
        let (tx, mut rx) = inbox();
        for i in 0..10 {
            tx.send(i).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert_eq!(rx.shared.lock().items.capacity(), 0);
    }
}
