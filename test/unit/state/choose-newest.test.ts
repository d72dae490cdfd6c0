import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { emptyState, type StateDocument } from '../../../src/state/document.js';
import { chooseNewest } from '../../../src/state/service.js';

function at(version: number, by: string): StateDocument {
  return { ...emptyState(), version, updatedBy: by };
}

describe('chooseNewest: which state document every replica adopts', () => {
  it('takes the highest version; unreadable members and members without a document do not count', () => {
    assert.equal(chooseNewest([at(3, 'a'), undefined, null, at(5, 'b'), at(4, 'c')])?.updatedBy, 'b');
  });

  it('with nothing readable there is nothing to adopt', () => {
    assert.equal(chooseNewest([undefined, null]), undefined);
  });

  it('when members disagree on the newest version, the content most of them hold wins (a race loser sits on a minority)', () => {
    assert.equal(chooseNewest([at(7, 'loser'), at(7, 'winner'), at(7, 'winner')])?.updatedBy, 'winner');
    assert.equal(chooseNewest([at(7, 'winner'), at(7, 'loser'), at(7, 'winner'), at(6, 'old')])?.updatedBy, 'winner');
  });

  it('a tie is broken the same way whatever order the members answer in', () => {
    const one = at(9, 'one');
    const two = at(9, 'two');
    assert.deepEqual(chooseNewest([one, two]), chooseNewest([two, one]));
  });
});
