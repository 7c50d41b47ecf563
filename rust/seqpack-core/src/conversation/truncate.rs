//! Which messages of a conversation survive a token budget. Decided from per-message token
//! counts: the system prompt (and tools) always stay; whole turns go oldest-first from the
//! middle; a user message and everything up to the next user message (assistant replies,
//! tool calls and their results) stay or go together. Plain data in, plain data out.

use crate::conversation::records::{Conversation, Role};

/// A run of messages that stays or goes as one: a user message and what follows it up to
/// the next user message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub messages: Vec<usize>,
    pub tokens: usize,
}

/// Split the messages into turns; a leading system prompt (message 0) is pinned, not a turn.
/// A system message later in the conversation belongs to the turn it appears in.
pub fn turns(conversation: &Conversation, messages: &[usize], tokens_of: impl Fn(usize) -> usize) -> Vec<Turn> {
    let mut turns: Vec<Turn> = Vec::new();
    for &index in messages {
        let message = &conversation.messages[index];
        if index == 0 && message.role == Role::System {
            continue;
        }
        match turns.last_mut() {
            Some(turn) if message.role != Role::User => {
                turn.messages.push(index);
                turn.tokens += tokens_of(index);
            }
            _ => turns.push(Turn { messages: vec![index], tokens: tokens_of(index) }),
        }
    }
    turns
}

/// Choose turns for one sample within `budget` tokens (what is left after the pinned system
/// prompt): the first turn if asked and it fits, then the latest turns, newest first, while
/// they fit. Always returns at least the last turn, even when it alone is over budget (the
/// caller cuts it at token level). Returns turn indices in order.
pub fn keep_latest(turns: &[Turn], budget: usize, keep_first_turn: bool) -> Vec<usize> {
    let Some(last) = turns.len().checked_sub(1) else { return Vec::new() };
    let mut used = turns[last].tokens;
    let mut kept_tail = vec![last];
    let mut first = None;
    if keep_first_turn && last > 0 && used + turns[0].tokens <= budget {
        used += turns[0].tokens;
        first = Some(0);
    }
    let floor = usize::from(first.is_some());
    for index in (floor..last).rev() {
        if used + turns[index].tokens > budget {
            break;
        }
        used += turns[index].tokens;
        kept_tail.push(index);
    }
    kept_tail.reverse();
    first.into_iter().chain(kept_tail).collect()
}

/// Partition all turns into consecutive windows that each fit `budget` (a turn over budget
/// alone gets a window of its own). Every turn is in exactly one window.
pub fn windows(turns: &[Turn], budget: usize) -> Vec<Vec<usize>> {
    let mut windows: Vec<Vec<usize>> = Vec::new();
    let mut used = 0;
    for (index, turn) in turns.iter().enumerate() {
        match windows.last_mut() {
            Some(window) if used + turn.tokens <= budget => {
                window.push(index);
                used += turn.tokens;
            }
            _ => {
                windows.push(vec![index]);
                used = turn.tokens;
            }
        }
    }
    windows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns_of(tokens: &[usize]) -> Vec<Turn> {
        tokens.iter().enumerate().map(|(i, &t)| Turn { messages: vec![i], tokens: t }).collect()
    }

    #[test]
    fn keeps_the_latest_turns_that_fit() {
        let turns = turns_of(&[10, 20, 30, 40]);
        assert_eq!(keep_latest(&turns, 100, false), vec![0, 1, 2, 3]);
        assert_eq!(keep_latest(&turns, 99, false), vec![1, 2, 3]);
        assert_eq!(keep_latest(&turns, 75, false), vec![2, 3]);
        assert_eq!(keep_latest(&turns, 75, true), vec![0, 3]);
        assert_eq!(keep_latest(&turns, 10, false), vec![3]);
        // A gap is never left in the tail: 3 fits, 2 does not, 1 would but is older.
        assert_eq!(keep_latest(&turns_of(&[5, 50, 5]), 20, false), vec![2]);
    }

    #[test]
    fn windows_cover_every_turn_once() {
        let turns = turns_of(&[10, 20, 30, 40, 100, 5]);
        let windows = windows(&turns, 50);
        assert_eq!(windows, vec![vec![0, 1], vec![2], vec![3], vec![4], vec![5]]);
    }
}
