//! Graph utilities over a function: consumers, topological order, dead-code elimination,
//! replacing uses, renaming, and checking a whole program.

mod check;

pub use check::{check_function, check_program};

use crate::error::ProgramError;
use crate::program::{Binding, Function};
use std::collections::{HashMap, HashSet};

/// Indices of the ops that read value `name`.
pub fn consumers(f: &Function, name: &str) -> Vec<usize> {
    f.operations
        .iter()
        .enumerate()
        .filter(|(_, op)| op.input_names().any(|n| n == name))
        .map(|(i, _)| i)
        .collect()
}

/// For every value name, how many times ops and block outputs read it.
pub fn use_counts(f: &Function) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for n in f
        .operations
        .iter()
        .flat_map(|op| op.input_names())
        .chain(f.outputs.iter().map(String::as_str))
    {
        *counts.entry(n).or_insert(0) += 1;
    }
    counts
}

/// Op indices in an order where every op comes after the producers of its inputs (stable:
/// ops already in order keep their order). Fails on a cycle or an undefined input.
pub fn topological_order(f: &Function) -> Result<Vec<usize>, ProgramError> {
    let producer: HashMap<&str, usize> = f
        .operations
        .iter()
        .enumerate()
        .flat_map(|(i, op)| op.outputs.iter().map(move |v| (v.name.as_str(), i)))
        .collect();
    let inputs: HashSet<&str> = f.inputs.iter().map(|v| v.name.as_str()).collect();
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(f.operations.len());
    for op in &f.operations {
        let mut d = Vec::new();
        for n in op.input_names() {
            match producer.get(n) {
                Some(&p) => d.push(p),
                None if inputs.contains(n) => {}
                None => {
                    return Err(ProgramError::UndefinedValue {
                        op: op.name.clone(),
                        name: n.to_string(),
                    });
                }
            }
        }
        deps.push(d);
    }
    // Depth-first post-order from each op in original order keeps the order stable.
    let mut state = vec![0u8; f.operations.len()]; // 0 new, 1 on stack, 2 done
    let mut order = Vec::with_capacity(f.operations.len());
    for start in 0..f.operations.len() {
        let mut stack = vec![(start, 0usize)];
        while let Some((i, k)) = stack.pop() {
            if k == 0 {
                if state[i] == 2 {
                    continue;
                }
                state[i] = 1;
            }
            if let Some(&d) = deps[i].get(k) {
                stack.push((i, k + 1));
                match state[d] {
                    0 => stack.push((d, 0)),
                    1 => {
                        return Err(ProgramError::InvalidValue {
                            op: f.operations[i].name.clone(),
                            op_type: f.operations[i].op_type.clone(),
                            param: "inputs".into(),
                            reason: "the graph has a cycle".into(),
                        });
                    }
                    _ => {}
                }
            } else {
                state[i] = 2;
                order.push(i);
            }
        }
    }
    Ok(order)
}

/// Reorders the ops topologically (see [`topological_order`]).
pub fn sort_topologically(f: &mut Function) -> Result<(), ProgramError> {
    let order = topological_order(f)?;
    let mut ops: Vec<Option<_>> = std::mem::take(&mut f.operations)
        .into_iter()
        .map(Some)
        .collect();
    f.operations = order
        .into_iter()
        .map(|i| ops[i].take().expect("each index once"))
        .collect();
    Ok(())
}

/// Removes ops none of whose outputs is used (transitively); returns how many were removed.
pub fn eliminate_dead_code(f: &mut Function) -> usize {
    let mut live: HashSet<String> = f.outputs.iter().cloned().collect();
    let mut keep = vec![false; f.operations.len()];
    for (i, op) in f.operations.iter().enumerate().rev() {
        if op.outputs.iter().any(|v| live.contains(&v.name)) {
            keep[i] = true;
            live.extend(op.input_names().map(str::to_string));
        }
    }
    let before = f.operations.len();
    let mut it = keep.into_iter();
    f.operations.retain(|_| it.next().unwrap_or(true));
    before - f.operations.len()
}

/// Makes every op input and block output that reads `old` read `new` instead; returns the
/// number of uses replaced.
pub fn replace_all_uses(f: &mut Function, old: &str, new: &str) -> usize {
    let mut n = 0;
    for op in &mut f.operations {
        for (_, bindings) in &mut op.inputs {
            for b in bindings {
                if let Binding::Name(name) = b
                    && name == old
                {
                    *name = new.to_string();
                    n += 1;
                }
            }
        }
    }
    for o in &mut f.outputs {
        if o == old {
            *o = new.to_string();
            n += 1;
        }
    }
    n
}

/// Renames value `old` (its definition and every use) to `new`. Fails when `new` is taken or
/// not an identifier, or `old` is undefined.
pub fn rename(f: &mut Function, old: &str, new: &str) -> Result<(), ProgramError> {
    if !crate::builder::is_identifier(new) {
        return Err(ProgramError::BadIdentifier {
            name: new.to_string(),
        });
    }
    if f.value_type(new).is_some() {
        return Err(ProgramError::DuplicateValue {
            name: new.to_string(),
        });
    }
    let def = f
        .inputs
        .iter_mut()
        .chain(f.operations.iter_mut().flat_map(|op| op.outputs.iter_mut()))
        .find(|v| v.name == old)
        .ok_or_else(|| ProgramError::UndefinedValue {
            op: "<rename>".into(),
            name: old.to_string(),
        })?;
    def.name = new.to_string();
    replace_all_uses(f, old, new);
    Ok(())
}

#[cfg(test)]
mod tests;
